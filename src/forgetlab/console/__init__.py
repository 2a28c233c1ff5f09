"""The web console `forgetlab serve` shows at `/`: plain HTML, CSS and JavaScript from this package (no build step,
nothing fetched from elsewhere), speaking only the public HTTP API. The endpoints it needs besides the chat and
learning ones are added here, so a script can do everything the page does:

    GET  /                                   the console
    GET  /console/{file}                     its script and style
    GET  /v1/learning/history                the learner's measurements over turns and its recent updates
    GET  /v1/sessions/{assistant}            an assistant's sessions and retention table
    POST /v1/sessions/{assistant}/rollback   make an earlier session (or one of its kept epochs) active, then serve it
    GET  /v1/runs                            the run index (`forgetlab runs`)
    GET  /v1/runs/{name}/report              one run's report.html
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI
from fastapi import Path as FastPath
from fastapi.responses import FileResponse, HTMLResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

STATIC = files(__package__) / "static"
ASSETS = {"console.js": "text/javascript", "console.css": "text/css"}
RECENT_UPDATES = 50
"""How many of the latest updates /v1/learning/history returns."""


Name = Annotated[str, FastPath(max_length=200, description="an assistant's name (GET /v1/models)")]
RunId = Annotated[str, FastPath(max_length=200, description="a run's id (GET /v1/runs)")]


class Rollback(BaseModel):
    to: int = Field(ge=1, lt=10_000, description="the session to make active")
    epoch: int | None = Field(None, ge=1, lt=10_000, description="one of its kept epochs (default: the session itself)")


def add_console_routes(app: FastAPI, holders: dict, learner, stores: dict, runs: Path) -> None:
    """The console and its endpoints. `holders` and `stores` by assistant name (a store is None for the bare bundled
    model), `runs`: the run directory whose index the runs browser lists."""

    @app.get("/", include_in_schema=False)
    def console():
        return HTMLResponse((STATIC / "index.html").read_text(encoding="utf-8"))

    @app.get("/console/{name}", include_in_schema=False)
    def asset(name: str):
        if name not in ASSETS:
            raise HTTPException(404, f"no console file {name}")
        return HTMLResponse((STATIC / name).read_text(encoding="utf-8"), media_type=ASSETS[name])

    @app.get("/v1/learning/history")
    def history():
        if learner is None:
            raise HTTPException(404, "learning is off; start the server with `forgetlab serve --learn`")
        updates = [u for t in learner.state.turn_lines() for u in
                   ({**u, "turn": t["turn"]} for u in t.get("updates", []))]
        return {"metrics": learner.state.metrics_history(), "updates": updates[-RECENT_UPDATES:],
                "updates_kept": sum(u["kept"] for u in updates), "updates_undone": sum(not u["kept"] for u in updates)}

    def store_of(assistant: str):
        if assistant not in holders:
            raise HTTPException(404, f"no assistant '{assistant}' here; this server serves {', '.join(holders)}")
        store = stores.get(assistant)
        if store is None or not store.exists() or store.info()["active"] is None:
            raise HTTPException(404, f"assistant '{assistant}' has no sessions; train one with `forgetlab session "
                                "train FILE --assistant NAME`")
        return store

    @app.get("/v1/sessions/{assistant}")
    def sessions(assistant: Name):
        from ..sessions.manage import SESSION_HEADER, retention_matrix, sessions_table

        store = store_of(assistant)
        info = store.info()
        chain, rows = retention_matrix(store)
        return {"assistant": assistant, "active": info["active"], "active_epoch": info.get("active_epoch"),
                "served": holders[assistant].current.session,
                "kept_epochs": {str(k): store.kept_epochs(k) for k in store.ids()},
                "sessions": {"header": SESSION_HEADER, "rows": sessions_table(store)},
                "retention": {"header": ["recall", *[f"session {j}" for j in chain], "general"], "rows": rows}}

    @app.post("/v1/sessions/{assistant}/rollback")
    async def rollback(assistant: Name, body: Rollback):
        from ..errors import UserError
        from ..sessions.manage import rollback as roll

        store = store_of(assistant)
        if learner is not None:
            raise HTTPException(409, "rollback is not available while learning (--learn): the learned adapter sits "
                                "on the session being served; stop the server, `forgetlab session rollback`, restart")
        if body.to not in store.ids():
            raise HTTPException(404, f"assistant '{assistant}' has sessions {', '.join(map(str, store.ids()))}, not "
                                f"{body.to}")
        try:
            roll(store, body.to, body.epoch)
        except UserError as e:
            raise HTTPException(400, str(e)) from None
        fresh = await run_in_threadpool(holders[assistant].reload)
        return {"assistant": assistant, "active": body.to, "epoch": body.epoch, "served": fresh.session}

    @app.get("/v1/runs")
    def run_index():
        from ..runs import list_runs

        return {"object": "list", "root": str(runs), "data": [
            {**r, "id": Path(r["path"]).name, "report": (Path(r["path"]) / "report.html").is_file()}
            for r in list_runs(runs)]}

    @app.get("/v1/runs/{name}/report")
    def report(name: RunId):
        from ..runs import list_runs

        found = next((Path(r["path"]) for r in list_runs(runs) if Path(r["path"]).name == name), None)
        if found is None or not (found / "report.html").is_file():  # only indexed runs: no path from the request
            raise HTTPException(404, f"no run '{name}' with a report in {runs}; GET /v1/runs lists them")
        return FileResponse(found / "report.html", media_type="text/html")
