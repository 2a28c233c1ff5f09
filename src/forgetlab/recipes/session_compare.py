"""`forgetlab session compare`: the same session files under several settings, so a user can choose with their data.

Reads top to bottom: validate every file and setting → for each setting and file, in order: `forgetlab session
train` in its own child process (the grid executor of `compare`), into an assistant home of that setting's own →
one retention table per setting and a summary → session_compare.json / .md, printed. `--resume DIR` skips the
sessions already trained and resumes an interrupted one.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..config import SessionCompareConfig
from ..grid import grid_status, run_command, run_grid, start_ray
from ..model import check_model
from ..report import fmt, markdown_table, write_page
from ..runs import clean_partial, index_run, new_run_dir, write_json, write_text
from ..sessions.data import load_examples
from ..sessions.manage import retention_matrix
from ..sessions.store import Store
from .session import can_resume

ASSISTANT = "assistant"


def run_session_compare(cfg: SessionCompareConfig, resume: Path | None = None, console=None) -> Path:
    """Train every file under every setting of `cfg` (or finish the comparison in `resume`); return its directory."""
    # Validate up front: a bad file fails before anything trains.
    for path in cfg.files + cfg.heldout:
        load_examples(path)
    check_model(cfg.session.model.name)
    start_ray(cfg.executor)  # joined or started before any directory exists: a bad address leaves nothing
    out = Path(resume) if resume else new_run_dir(cfg.root, "session-compare-" + "-".join(Path(f).stem for f in cfg.files))
    if resume:
        clean_partial(out)  # what a kill mid-write left aside
    write_text(out / "config.json", json.dumps(cfg.model_dump(mode="json"), indent=2))

    # One Ray task per setting, training its session files in order (each in a child process); the tables are
    # rewritten as settings finish.
    results = run_grid(list(cfg.settings), lambda name: [run_session(cfg, out, name, i) for i in range(len(cfg.files))],
                       lambda done, status: finish(cfg, out, done, status, console if status == "interrupted" else None),
                       out, lambda name: f"setting {name}", console, command="session compare", executor=cfg.executor,
                       failed=lambda name, error: [{"setting": name, "session": i + 1, "file": f, "status": "failed",
                                                    "error": error, "seconds": None} for i, f in enumerate(cfg.files)])
    finish(cfg, out, results, grid_status(results), console)
    return out


def store_for(out: Path, name: str) -> Store:
    return Store(out / name, ASSISTANT)


def run_session(cfg: SessionCompareConfig, out: Path, name: str, i: int) -> dict:
    """Train (or resume, or reuse) session i + 1 of setting `name` with `forgetlab session train`."""
    store = store_for(out, name)
    result = {"setting": name, "session": i + 1, "file": cfg.files[i], "error": None, "seconds": None}
    if len(store.ids()) > i:
        return dict(result, status="complete")
    if len(store.ids()) < i:
        return dict(result, status="failed", error=f"session {len(store.ids()) + 1} of this setting did not finish")
    config = out / "settings" / f"{name}.json"
    write_text(config, json.dumps(cfg.setting(name, cfg.settings[name]).model_dump(mode="json"), indent=2))
    args = ["session", "train", "--assistant", ASSISTANT, "--home", str(store.path.parent)]
    if can_resume(store):  # carries on with the settings it started with
        args.append("--resume")
    else:
        args += ["--config", str(config)]
        args.append(cfg.files[i])
        if cfg.heldout:
            args += ["--heldout", cfg.heldout[i]]
    return dict(result, **run_command(args, log=out / "logs" / f"{name}-session{i + 1}.log"))


def setting_summary(store: Store) -> dict:
    """Recall right after each session, the lowest share of it kept by later sessions, general answers, time."""
    if not store.exists() or store.info()["active"] is None:
        return {}
    chain, rows = retention_matrix(store)
    after = {k: rows[1 + n] for n, k in enumerate(chain)}
    own = [after[k][1 + n] for n, k in enumerate(chain)]
    kept = [after[k][1 + j] / own[j] for j in range(len(chain)) for k in chain[j + 1:] if own[j]]
    records = [store.session(k) for k in chain]
    return {"chain": chain, "rows": rows, "recall_after_own": own, "lowest_kept": min(kept) if kept else None,
            "general_base": rows[0][-1], "general_last": after[chain[-1]][-1],
            "seconds_per_session": sum(r["wall_seconds"] for r in records) / len(records)}


def finish(cfg: SessionCompareConfig, out: Path, results: list[dict], status: str, console) -> None:
    """session_compare.json and .md: one retention table per setting and the summary; printed with a console."""
    summaries = {name: setting_summary(store_for(out, name)) for name in cfg.settings}
    write_json(out / "session_compare.json", {"status": status, "files": list(cfg.files), "settings": cfg.settings,
                                              "runs": results, "summary": summaries})
    write_text(out / "session_compare.md", markdown(cfg, summaries, results))
    failed = [[r["setting"], r["session"], r["error"]] for r in results if r["status"] == "failed"]
    write_page(out, f"forgetlab session compare: {out.name}", f"status: {status} · sessions in order: "
               + ", ".join(Path(f).name for f in cfg.files),
               [("Settings compared", *summary_table(cfg, summaries))]
               + [(f"{name}: recall on each session's check questions", *retention_table(s))
                  for name, s in summaries.items() if s] + ([("Failed", ["setting", "session", "error"], failed)] * bool(failed)),
               [], [(f"{name}: retention after each session", f"{name}/assistant/report.html",
                     f"{name}/assistant/retention.png") for name, s in summaries.items() if s],
               settings={"files": [Path(f).name for f in cfg.files], "held-out files": [Path(f).name for f in cfg.heldout],
                             **{f"setting {k}": ", ".join(f"{a}={b}" for a, b in v.items()) or "defaults"
                                for k, v in cfg.settings.items()}},
               terms=["recall", "lowest share kept", "general"])
    index_run(cfg.root, out, "session compare", out.name, status,
              {"settings": len(cfg.settings), "failed": sum(r["status"] != "complete" for r in results)})
    if console:
        print_tables(console, cfg, summaries, results)


def summary_table(cfg: SessionCompareConfig, summaries: dict) -> tuple[list[str], list[list[str]]]:
    header = ["setting", "changes", "recall right after each session", "lowest share kept later", "general (base)",
              "s per session"]
    body = []
    for name, s in summaries.items():
        changes = ", ".join(f"{k}={v}" for k, v in cfg.settings[name].items()) or "-"
        if not s:
            body.append([name, changes, "-", "-", "-", "-"])
            continue
        body.append([name, changes, " / ".join(fmt(v) for v in s["recall_after_own"]), fmt(s["lowest_kept"]),
                     f"{fmt(s['general_last'])} ({fmt(s['general_base'])})", f"{s['seconds_per_session']:.0f}"])
    return header, body


def retention_table(s: dict) -> tuple[list[str], list[list[str]]]:
    header = ["recall"] + [f"session {j}" for j in s["chain"]] + ["general"]
    return header, [[row[0]] + [fmt(v) for v in row[1:]] for row in s["rows"]]


def markdown(cfg: SessionCompareConfig, summaries: dict, results: list[dict]) -> str:
    parts = [f"# session compare: {', '.join(Path(f).name for f in cfg.files)}",
             markdown_table(*summary_table(cfg, summaries))]
    for name, s in summaries.items():
        if s:
            parts += [f"## {name}", markdown_table(*retention_table(s))]
    failed = [r for r in results if r["status"] == "failed"]
    parts += [f"- {r['setting']} session {r['session']}: {r['error']}" for r in failed]
    return "\n\n".join(parts) + "\n"


def print_tables(console, cfg: SessionCompareConfig, summaries: dict, results: list[dict]) -> None:
    from rich.table import Table

    for name, s in summaries.items():
        if s:
            header, body = retention_table(s)
            t = Table(*header, title=f"{name}: recall on each session's check questions; general: share of 28 "
                      "general questions", title_justify="left")
            for b in body:
                t.add_row(*b)
            console.print(t)
    header, body = summary_table(cfg, summaries)
    t = Table(*header, title="Settings compared (lowest share kept: later recall / recall right after, the worst "
              "over sessions)", title_justify="left")
    for b in body:
        t.add_row(*b)
    console.print(t)
    for r in results:
        if r["status"] == "failed":
            console.print(f"[red]failed:[/] {r['setting']} session {r['session']}: {r['error']}")
