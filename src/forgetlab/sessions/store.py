"""An assistant's directory: one folder per finished session, and a pointer to the active one.

    <home>/<name>/assistant.json        name, base model, mode, active session
    <home>/<name>/sessions/001/          session.json (settings, data hash, parent, times), adapter/, train.jsonl,
                                         heldout.jsonl, metrics.json, history.csv, train.log
    <home>/<name>/sessions/.partial/     the session being trained (epoch checkpoints); renamed to NNN when done

A finished session folder appears in one rename, and assistant.json is replaced atomically, so a crash leaves every
earlier session intact. Sessions form a chain through `parent`: after a rollback the next session is trained on the
session rolled back to, and the rolled-back ones stay on disk (a later rollback can return to them).
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

from ..errors import UserError
from ..runs import read_json, write_json

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


def epoch_dir(session_dir: Path, epoch: int) -> Path:
    return session_dir / "epochs" / f"{epoch:03d}"


def home_dir(home: str | None) -> Path:
    """Where assistants live: --home, else $FORGETLAB_HOME, else the user data directory."""
    if home:
        return Path(home).expanduser()
    if os.environ.get("FORGETLAB_HOME"):
        return Path(os.environ["FORGETLAB_HOME"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("forgetlab")) / "assistants"


class Store:
    """The files of one assistant."""

    def __init__(self, home: str | Path | None, name: str):
        if not NAME.match(name or ""):
            raise UserError(f"assistant name '{name}' is not allowed; use letters, digits, '.', '_' or '-' (e.g. msu)")
        self.name = name
        self.path = home_dir(str(home) if home else None) / name

    # -- the assistant ------------------------------------------------------------------------------------------
    def exists(self) -> bool:
        return (self.path / "assistant.json").is_file()

    def info(self) -> dict:
        if not self.exists():
            raise UserError(f"no assistant '{self.name}' under {self.path.parent}; "
                            f"create it with `forgetlab session train FILE --assistant {self.name}` (or pass --home)")
        return read_json(self.path / "assistant.json")

    def create(self, model: str, mode: str) -> dict:
        info = {"name": self.name, "model": model, "mode": mode, "active": None,
                "created": time.strftime("%Y-%m-%d %H:%M:%S")}
        write_json(self.path / "assistant.json", info)
        return info

    def set_active(self, session: int | None, epoch: int | None = None) -> None:
        """Make `session` the active one; `epoch`: one of its kept epochs instead of its final adapter."""
        info = self.info()
        info["active"], info["active_epoch"] = session, epoch
        write_json(self.path / "assistant.json", info)

    # -- sessions ----------------------------------------------------------------------------------------------
    def session_dir(self, k: int) -> Path:
        return self.path / "sessions" / f"{k:03d}"

    @property
    def partial_dir(self) -> Path:
        return self.path / "sessions" / ".partial"

    def ids(self) -> list[int]:
        root = self.path / "sessions"
        if not root.is_dir():
            return []
        return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit() and (p / "session.json").is_file())

    def session(self, k: int) -> dict:
        if k not in self.ids():
            have = ", ".join(map(str, self.ids())) or "none yet"
            raise UserError(f"assistant '{self.name}' has no session {k}; its sessions: {have}")
        return read_json(self.session_dir(k) / "session.json")

    def adapter_path(self, k: int, epoch: int | None = None) -> Path:
        """Session k's adapter directory: the final one, or a kept epoch's."""
        return self.session_dir(k) / "adapter" if epoch is None else epoch_dir(self.session_dir(k), epoch) / "adapter"

    def kept_epochs(self, k: int) -> list[int]:
        root = self.session_dir(k) / "epochs"
        return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit()) if root.is_dir() else []

    def links(self, k: int | None, epoch: int | None = None) -> dict[int, int | None]:
        """{session: epoch} from the first session to `k` (at `epoch`, None: final): each earlier session at the epoch
        its child was trained on. Insertion-ordered from the first."""
        out: dict[int, int | None] = {}
        while k is not None:
            out[k] = epoch
            record = self.session(k)
            k, epoch = record.get("parent"), record.get("parent_epoch")
        return dict(reversed(list(out.items())))

    def chain(self, k: int | None) -> list[int]:
        """Session ids from the first to `k` through the parents: what session k's model is built from."""
        out = []
        while k is not None:
            out.append(k)
            k = self.session(k).get("parent")
        return out[::-1]

    def next_id(self) -> int:
        return max(self.ids(), default=0) + 1

    def finish(self, k: int) -> Path:
        """Move the finished .partial folder into place as session k and make it the active session."""
        target = self.session_dir(k)
        os.replace(self.partial_dir, target)
        self.set_active(k)
        return target
