"""The package's layering, read from the source with `ast`: imports point down (cli → recipes → workflow packages →
core → metrics/errors), nothing imports cli/ or recipes/ from below, there is no import cycle between modules, no
module is over 400 lines, and `forgetlab --help` (every command's) loads without torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "forgetlab"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """The forgetlab modules `path` imports (at any depth in the file: lazy imports count too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:  # `from . import x` may name a module
                candidate = f"{target}.{alias.name}"
                found.add(candidate if candidate in MODULES else target)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m.startswith("forgetlab") and m != name and m in MODULES}


FILES = sorted(SRC.rglob("*.py"))
MODULES = {module_name(p) for p in FILES}
GRAPH = {module_name(p): imports_of(p) for p in FILES}


def in_layer(module: str, top: str) -> bool:
    return module == f"forgetlab.{top}" or module.startswith(f"forgetlab.{top}.")


def test_nothing_below_imports_cli_or_recipes():
    wrong = []
    for module, targets in GRAPH.items():
        for target in targets:
            if in_layer(target, "cli") and not in_layer(module, "cli"):
                wrong.append(f"{module} -> {target}")
            if in_layer(target, "recipes") and not (in_layer(module, "cli") or in_layer(module, "recipes")):
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports from below cli/ or recipes/: " + ", ".join(sorted(wrong))


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), i.e. the import cycles."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                out.append(sorted(group))

    sys.setrecursionlimit(10_000)
    for v in graph:
        if v not in index:
            visit(v)
    return out


def parent_packages(module: str) -> set[str]:
    parts = module.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_no_import_cycle():
    # a package's __init__ that re-exports its own modules is not a cycle: drop edges from a module to its parents
    graph = {m: {t for t in ts if t not in parent_packages(m)} for m, ts in GRAPH.items()}
    assert not cycles(graph), cycles(graph)


def test_the_cycle_finder_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_over_400_lines(path):
    assert len(path.read_text().splitlines()) <= 400


def test_help_loads_without_torch():
    code = ("import sys\nfrom forgetlab.cli import build_parser\np = build_parser()\n"
            "for argv in [['--help']] + [[c, '--help'] for c in ('sequential', 'compare', 'methods', 'runs', 'session', "
            "'chat', 'serve', 'online-eval', 'unlearn', 'rtt', 'sweep')] + [['session', a, '--help'] for a in "
            "('train', 'list', 'rollback', 'compare', 'export')]:\n"
            "    try:\n        p.parse_args(argv)\n    except SystemExit:\n        pass\n"
            "import forgetlab.config, forgetlab.online\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO TORCH', file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stderr.strip().endswith("NO TORCH"), r.stderr[-500:]
