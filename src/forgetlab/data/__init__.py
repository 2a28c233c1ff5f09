"""Task sources: `facts:<domain>`, `mmlu:<subject>`, `file:<path>`. Each returns a `Task` of plain records."""

from __future__ import annotations

from ..config import DataConfig
from ..errors import UserError
from . import facts, file, mmlu
from .records import Example, MCQItem, Task

SOURCES = {"facts": facts.load, "mmlu": mmlu.load, "file": file.load}

__all__ = ["Example", "MCQItem", "Task", "SOURCES", "load_task"]


def load_task(spec: str, cfg: DataConfig) -> Task:
    """Build the task named by `spec` ("source:name")."""
    source, _, name = spec.partition(":")
    if source not in SOURCES:
        raise UserError(f"task '{spec}': unknown source '{source}'; valid sources: {', '.join(SOURCES)}")
    if not name:
        raise UserError(f"task '{spec}': missing name after '{source}:', e.g. facts:people")
    task = SOURCES[source](name, cfg)
    task.name = spec
    return task
