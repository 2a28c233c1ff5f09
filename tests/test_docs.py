"""What a reader copies from the documentation works: every command shown in the README, docs/, configs/README.md
and examples/README.md parses, names files that exist and builds its config and data checks (the run itself
stopped just before training); every example file's command runs to the end on a tiny model."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tests.browser import open_report
from tests.conftest import call_main

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["README.md", "docs/methods.md", "docs/results.md", "configs/README.md", "examples/README.md"]
STARTS = (".venv/bin/forgetlab ", "forgetlab ", "make ")
PLACEHOLDER = re.compile(r"<[^>]*>|\.\.\.|\[--|\b(?:DIR|FILE|RUN_DIR|PATH|NAME|SPEC|YAML|N|K|E|M|R)\b|\bX\.jsonl|\|")


def shown_commands(text: str) -> list[str]:
    """Commands in code blocks (a `\\` continues a line, `E=dir` sets $E, a `printf ... |` feeds one) and in inline
    code spans, as a reader would copy them."""
    commands = []
    for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S):
        env = {}
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if m := re.fullmatch(r"([A-Z]+)=(\S+)", line):
                env[m[1]] = m[2]
                continue
            for k, v in env.items():
                line = line.replace("$" + k, v)
            if line.startswith("printf ") and "| " in line:
                line = line.rsplit("| ", 1)[1]
            if line.startswith(STARTS):
                commands.append(line)
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    commands += [" ".join(s.split()) for s in re.findall(r"`([^`]+)`", prose) if s.startswith(STARTS)]
    return commands


def argv_of(command: str) -> list[str]:
    words = shlex.split(command, comments=True)
    return words[1:]


def everything_shown() -> list[tuple[str, str]]:
    return [(doc, c) for doc in DOCS for c in shown_commands((ROOT / doc).read_text(encoding="utf-8"))]


def test_the_docs_show_commands_and_templates_are_few():
    shown = everything_shown()
    whole = [c for _, c in shown if not PLACEHOLDER.search(c)]
    assert len(whole) >= 80 and len(whole) >= 0.8 * len(shown), (len(whole), len(shown))


MAKE_TARGETS = set(re.findall(r"^([a-z-]+):", (ROOT / "Makefile").read_text(), re.M))


class Stopped(Exception):
    """Raised in place of a workflow's run: everything before it (flags, config, data checks) has passed."""


RECIPES = [("forgetlab.recipes.sequential", "run_sequential"), ("forgetlab.recipes.compare", "run_compare"),
           ("forgetlab.recipes.unlearn", "run_unlearn"), ("forgetlab.recipes.sweep", "run_sweep"),
           ("forgetlab.recipes.session_compare", "run_session_compare"), ("forgetlab.recipes.session", "train_session"),
           ("forgetlab.recipes.online_eval", "online_eval"), ("forgetlab.recipes.online_edits", "online_edits")]
STATEFUL = {"runs", "chat", "serve", "rtt", "attack", "list", "rollback", "export"}
"""Commands that act on what an earlier command made (an assistant, a run): their flags are parsed, not run."""


def dry_run(monkeypatch, tmp_path, capsys, argv: list[str]):
    import importlib

    for module, name in RECIPES:
        def stop(*a, **k):
            raise Stopped
        monkeypatch.setattr(importlib.import_module(module), name, stop)
    monkeypatch.setenv("FORGETLAB_HOME", str(tmp_path / "home"))
    return call_main(capsys, *argv)


@pytest.mark.parametrize("doc", DOCS)
def test_every_command_shown_works_as_written(doc, monkeypatch, tmp_path, capsys):
    from forgetlab.cli import build_parser

    monkeypatch.chdir(ROOT)
    checked = 0
    for command in shown_commands((ROOT / doc).read_text(encoding="utf-8")):
        if PLACEHOLDER.search(command):
            continue  # a template: it names what to put where (runs/<run>, DIR), not a command to copy
        argv = argv_of(command)
        if command.startswith("make "):
            assert set(argv) <= MAKE_TARGETS, f"{doc}: `{command}`: no such make target"
            continue
        for word in argv:
            if word.startswith(("examples/", "configs/")) or "=examples/" in word:
                path = word.split("=", 1)[-1].strip("[]'")
                assert (ROOT / path).exists(), f"{doc}: `{command}` names {path}, which is not there"
        if "--help" in argv:
            assert call_main(capsys, *argv).returncode == 0, f"{doc}: `{command}` fails"
            continue
        try:
            args = build_parser().parse_args(argv)
        except SystemExit:
            raise AssertionError(f"{doc}: `{command}` does not parse: {capsys.readouterr().err}") from None
        if len(argv) == 1 and argv[0] not in ("methods", "unlearn", "online-eval"):
            continue  # a command named in a sentence ("runs on the same executor as `forgetlab sweep`")
        if STATEFUL & set(argv[:2]) or getattr(args, "list", False) or getattr(args, "resume", None):
            continue
        try:
            r = dry_run(monkeypatch, tmp_path, capsys, argv)
        except Stopped:
            checked += 1
            continue
        if r.returncode == 0:  # a command that does its whole work before any run (`forgetlab methods`)
            checked += 1
            continue
        raise AssertionError(f"{doc}: `{command}` stopped before its run (exit {r.returncode}): {r.stderr[-500:]}")
    if doc != "docs/results.md":
        assert checked > 0, f"{doc}: no command was checked"


EXAMPLE_SPEED = {
    "sequential": ["--epochs", "1", "--no-landscape", "--set", "general.enabled=false", "--set", "lora.rank=4"],
    "unlearn": ["--save", "none", "--lora-rank", "4", "--epochs", "1", "--set", "guard.enabled=false",
                "--set", "general.enabled=false", "--set", "train.batch_size=16", "--set", "relearn.epochs=1",
                "--set", "relearn.lrs=[0.001]"],
    "online-eval": ["--set", "update.steps=2", "--set", "gate.controls=0", "--set", "gate.check_tokens=4",
                    "--set", "metrics_every=0", "--repeats", "1"],
    "session": ["--epochs", "1", "--rephrase", "0"],
}


EXAMPLES = [c for c in shown_commands((ROOT / "examples/README.md").read_text(encoding="utf-8"))
            if not PLACEHOLDER.search(c) and "--help" not in c]


def test_every_example_file_has_a_command():
    named = " ".join(EXAMPLES)
    files = [p.relative_to(ROOT).as_posix() for p in (ROOT / "examples").rglob("*.json*")]
    unused = [f for f in files if f not in named and "/unlearn/" not in f and "/lm_eval/" not in f
              and "paraphrases" not in f and not f.startswith("examples/sessions/")]
    assert not unused, f"example files no command in examples/README.md runs: {unused}"


@pytest.mark.parametrize("command", EXAMPLES)
def test_every_example_runs_on_a_tiny_model(command, tiny_dir, tmp_path, monkeypatch, capsys, browser):
    monkeypatch.chdir(ROOT)
    argv = argv_of(command)
    kind = argv[0]
    where = ["--home", str(tmp_path / "home")] if kind == "session" else ["--out", str(tmp_path / "runs")]
    extra = ["--limit", "3"] if "--edits" in argv else []
    r = call_main(capsys, *argv, "--model", str(tiny_dir), *where, *EXAMPLE_SPEED[kind], *extra)
    assert r.returncode == 0, f"`{command}`: {r.stderr[-1500:]}"
    if kind == "session":
        assert (tmp_path / "home" / "demo" / "sessions" / "001" / "metrics.json").is_file()
        report = tmp_path / "home" / "demo" / "report.html"
    else:
        runs = [p for p in (tmp_path / "runs").iterdir() if p.is_dir()]
        assert len(runs) == 1 and (runs[0] / "metrics.json").is_file(), runs
        report = runs[0] / "report.html"
    shown = open_report(browser, report)  # every workflow's page: settings, definitions, pictures inside it
    assert shown["images"] or "--facts" in argv, "the report has a plot (online-eval's curve needs metrics_every > 0)"
