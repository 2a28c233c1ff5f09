"""The `forgetlab` command: one table of subcommands, each thin over a recipe.

Errors a user can cause end in one line naming the problem and the fix, with exit code 2 and no traceback.
Nothing below this package imports it; `forgetlab --help` and every `--help` load without torch.
"""

from __future__ import annotations

import sys

from .. import __version__
from ..errors import BelowBar, Interrupted, UserError
from . import chat, sessions, study, unlearn
from .common import Parser

COMMANDS = (
    study.add_sequential, study.add_compare, study.add_methods, study.add_runs,
    sessions.add_session, chat.add_chat, chat.add_serve, chat.add_online_eval,
    unlearn.add_unlearn, unlearn.add_rtt, unlearn.add_attack, unlearn.add_sweep,
)
"""Every subcommand, in the order `forgetlab --help` lists them: each adds its parser to the table."""


def build_parser() -> Parser:
    parser = Parser(prog="forgetlab", description="Teach a language model with LoRA, make it forget on purpose, "
                    "and measure all of it.")
    parser.add_argument("--version", action="version", version=f"forgetlab {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for add in COMMANDS:
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except UserError as e:
        print(f"forgetlab: error: {e}", file=sys.stderr)
        return 2
    except BelowBar as e:
        print(f"forgetlab: {e}", file=sys.stderr)
        return 3
    except Interrupted as e:
        print(f"forgetlab: interrupted; finished work is saved. Carry on with: {e.resume_command}", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("forgetlab: interrupted", file=sys.stderr)
        return 130
    except OSError as e:  # the file system said no (a path through a file, no permission, a full disk)
        if e.filename is None:
            raise
        print(f"forgetlab: error: {e.filename}: {e.strerror}; check the path, its permissions and the free space "
              "(an interrupted run carries on with --resume)", file=sys.stderr)
        return 2

