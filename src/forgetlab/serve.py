"""`forgetlab serve`: an OpenAI-compatible HTTP API over a ModelHolder (FastAPI + uvicorn).

    GET  /health                 the assistant, the session being served, when it was loaded
    GET  /v1/models              one model: the assistant's name
    POST /v1/chat/completions    non-streaming or SSE streaming; temperature, top_p, max_tokens, stop, seed
    POST /admin/reload           switch to the assistant's active session now (requests in flight finish first)

With `--learn` (an `OnlineLearner` given), every chat turn is learned from after its answer is sent, unless the
request says `"learn": false` (the openai client's `extra_body`); the `X-Forgetlab-Turn` header numbers the turn:

    GET    /v1/learning          queue length, turns learned, facts stored, last metrics
    POST   /v1/learning/wait     return once every queued turn is learned (for scripts and tests)
    GET    /v1/memory            the facts learned, with ids and their importance now
    DELETE /v1/memory/{id}       remove one

`/` serves the web console (`forgetlab/console/`), whose endpoints — learning history, sessions and rollback, the run
index and its reports — are listed there.

Every answer names the session that produced it in the `X-Forgetlab-Session` header. Errors are OpenAI-style JSON
({"error": {"message", "type", "param", "code"}}) with 400 / 404 status codes; an unexpected failure is a 500 with
a one-line message, never a traceback. The HTTP layer only parses, validates and formats: generation, queueing and
reloading belong to the holder.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from pathlib import Path
from typing import Annotated, Literal

from fastapi import FastAPI, Request
from fastapi import Path as FastPath
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictBool
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException

from .errors import UserError
from .sessions.holder import Completion, ModelHolder, RequestError

MAX_TOKENS = 4096


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def plain(self) -> dict:
        text = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": text}


class ChatRequest(BaseModel):
    """The fields of OpenAI's chat completion request that a local model can honour; others are ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[Message] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    max_completion_tokens: int | None = Field(None, ge=1, le=MAX_TOKENS)
    temperature: float = Field(0.0, ge=0, le=2)  # default greedy: a Q&A assistant should answer the same way twice
    top_p: float = Field(1.0, gt=0, le=1)
    stop: str | list[str] | None = None
    stream: bool = False
    stream_options: dict | None = None
    n: int = Field(1, ge=1, le=1)
    seed: int | None = None
    learn: StrictBool = True  # with --learn: learn from this turn after answering it


def error(status: int, message: str, param: str | None = None, code: str | None = None,
          kind: str = "invalid_request_error") -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}}, status_code=status)


def create_app(holder: ModelHolder | list[ModelHolder], learner=None, stores: dict | None = None,
               runs: str | Path = "runs") -> FastAPI:
    """The API over `holder` — or several, one per assistant, the request's `model` picking one — (and `learner`,
    when learning, with one holder), and the console at `/` (`stores`: each assistant's session store, by name;
    `runs`: the run directory it browses); a test can drive it in-process or through uvicorn."""
    app = FastAPI(title="forgetlab", description="OpenAI-compatible API of a forgetlab assistant")
    holders = {h.current.assistant: h for h in (holder if isinstance(holder, list) else [holder])}
    holder = next(iter(holders.values()))  # the first: what /health and /admin/reload name first

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        loc = [str(x) for x in first.get("loc", ()) if x != "body"]
        return error(400, f"{'.'.join(loc) or 'body'}: {first.get('msg')}", loc[0] if loc else None)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail), kind="invalid_request_error" if exc.status_code < 500 else
                     "server_error")

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        return error(500, f"internal error ({type(exc).__name__}); see the server log", kind="server_error")

    @app.get("/health")
    def health():
        now = holder.current
        return {"status": "ok", "assistant": now.assistant, "session": now.session, "loaded_at": now.loaded_at,
                "assistants": [{"assistant": h.current.assistant, "session": h.current.session} for h in holders.values()]}

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": h.current.assistant, "object": "model",
                                            "created": int(h.current.loaded_at), "owned_by": "forgetlab"}
                                           for h in holders.values()]}

    @app.post("/admin/reload")
    async def reload():
        if learner is not None:  # the learned adapter sits on the model being served: a new model would drop it
            return error(409, "reload is not available while learning (--learn); restart the server to serve the "
                         "active session", code="learning_on")
        before = {name: h.current.session for name, h in holders.items()}
        fresh = [await run_in_threadpool(h.reload) for h in holders.values()]
        now = fresh[0]
        return {"assistant": now.assistant, "session": now.session, "previous": before[now.assistant],
                "assistants": [{"assistant": f.assistant, "session": f.session, "previous": before[f.assistant]}
                               for f in fresh]}

    @app.post("/v1/chat/completions")
    async def chat(req: ChatRequest):
        if req.model not in holders:
            return error(404, f"the model '{req.model}' does not exist; this server serves "
                         f"{', '.join(repr(n) for n in holders)}", "model", "model_not_found")
        serving = holders[req.model]
        loaded = serving.current
        stops = [req.stop] if isinstance(req.stop, str) else list(req.stop or [])
        if len(stops) > 4:
            return error(400, "stop: at most 4 sequences", "stop")
        params = {"max_tokens": req.max_completion_tokens or req.max_tokens or 256, "temperature": req.temperature,
                  "top_p": req.top_p, "stop": stops, "seed": req.seed, "loaded": loaded}
        messages = [m.plain() for m in req.messages]
        headers = {"X-Forgetlab-Session": str(loaded.session), "X-Forgetlab-Assistant": loaded.assistant}
        rid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        learn = learner is not None and req.learn and messages[-1]["role"] == "user"
        turn = learner.state.next_turn() if learn else None
        if turn is not None:
            headers["X-Forgetlab-Turn"] = str(turn)

        def learn_from(done: Completion) -> None:
            if turn is not None:
                learner.submit(messages[-1]["content"], done.text, turn=turn)

        try:
            if req.stream:
                pieces = generated(serving, messages, params)
                await pieces.__anext__()  # raises RequestError here, before the response starts
                include_usage = bool((req.stream_options or {}).get("include_usage"))
                return StreamingResponse(sse(pieces, rid, created, req.model, include_usage, learn_from),
                                         media_type="text/event-stream", headers=headers)
            done = await run_in_threadpool(lambda: serving.complete(messages, **params))
        except RequestError as e:
            return error(400, str(e), e.param)
        learn_from(done)
        body = {"id": rid, "object": "chat.completion", "created": created, "model": req.model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": done.text},
                             "finish_reason": done.finish_reason, "logprobs": None}],
                "usage": usage(done)}
        return JSONResponse(body, headers=headers)

    add_learning_routes(app, learner)
    from .console import add_console_routes

    add_console_routes(app, holders, learner, stores or {}, Path(runs))
    return app


def add_learning_routes(app: FastAPI, learner) -> None:
    """/v1/learning and /v1/memory: 404 with a hint when the server was started without --learn."""
    def need():
        if learner is None:
            raise HTTPException(404, "learning is off; start the server with `forgetlab serve --learn`")

    @app.get("/v1/learning")
    def learning():
        need()
        return learner.status()

    @app.post("/v1/learning/wait")
    async def wait():
        need()
        await run_in_threadpool(learner.wait)
        return learner.status()

    @app.get("/v1/memory")
    def memory():
        need()
        from .online.memory import importance

        turn = learner.state.turn
        return {"object": "list", "data": [{**f, "importance": importance(f, turn, learner.cfg.memory)}
                                           for f in learner.memory.all()]}

    @app.delete("/v1/memory/{fid}")
    def forget(fid: Annotated[int, FastPath(ge=0, lt=2**63, description="a fact's id (GET /v1/memory)")]):
        need()
        if not learner.forget(fid):
            raise HTTPException(404, f"no fact {fid}; GET /v1/memory lists them")
        return {"id": fid, "deleted": True}


def usage(done: Completion) -> dict:
    return {"prompt_tokens": done.prompt_tokens, "completion_tokens": done.completion_tokens,
            "total_tokens": done.prompt_tokens + done.completion_tokens}


async def generated(holder: ModelHolder, messages: list[dict], params: dict):
    """The holder's pieces, generated in a thread of their own and handed over through a queue: a client that reads
    slowly never holds the model (its lock) up for everyone, and one that hangs up stops generation at the next
    token. Yields None first, once the request has been accepted (RequestError is raised before that)."""
    import asyncio
    import threading

    loop, queue, cancel = asyncio.get_running_loop(), asyncio.Queue(), threading.Event()
    pieces = holder.stream(messages, cancel=cancel, **params)

    def hand_over(item) -> None:
        try:
            loop.call_soon_threadsafe(queue.put_nowait, item)
        except RuntimeError:  # the server's loop has closed (shutting down)
            cancel.set()

    def work() -> None:
        try:
            for piece in pieces:
                hand_over(piece)
        except Exception as e:  # reported to the client's stream below
            hand_over(e)
        finally:
            hand_over(StopAsyncIteration())

    yield None
    threading.Thread(target=work, daemon=True, name="forgetlab-stream").start()
    try:
        while not isinstance(item := await queue.get(), StopAsyncIteration):
            if isinstance(item, Exception):
                raise item
            yield item
    finally:
        cancel.set()  # a hung-up client: generation ends at the next token and the model is free


async def sse(pieces, rid: str, created: int, model: str, include_usage: bool, on_done=None):
    """Server-sent events in OpenAI's chunk format, ending with `data: [DONE]`; `on_done(completion)` once complete."""
    def chunk(delta: dict, finish: str | None = None, **extra) -> str:
        choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
        body = {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model, "choices": choices}
        return f"data: {json.dumps(dict(body, **extra))}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    async for piece in pieces:
        if isinstance(piece, Completion):
            if on_done is not None:
                on_done(piece)
            yield chunk({}, piece.finish_reason)
            if include_usage:
                yield chunk(None, usage=usage(piece))
        else:
            yield chunk({"content": piece})
    yield "data: [DONE]\n\n"


def check_listen(host: str, port: int) -> None:
    """Fail before the model loads when the server could not listen at host:port (bad port, in use, unknown host)."""
    import socket

    if not 0 < port < 65536:
        raise UserError(f"--port {port}: not a TCP port; pass one from 1 to 65535")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        with socket.socket(infos[0][0], socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
            s.bind(infos[0][4])
    except OSError as e:
        raise UserError(f"--host {host} --port {port}: cannot listen there ({e.strerror or e}); pick a free port with "
                        "--port, or an address of this machine with --host") from None


def run(holder: ModelHolder, host: str, port: int, log_level: str = "info", learner=None, stores: dict | None = None,
        runs: str | Path = "runs") -> None:
    """Serve until interrupted. With one batch scheduler, its decoding runs on this (the main) thread and uvicorn on
    another: torch decodes a sequence about 1.6× faster on the thread that loaded the model than on one of its own
    (bench/RESULTS.md). SIGTERM and Ctrl-C stop the server; requests still decoding are answered with an error."""
    import signal

    import uvicorn

    app = create_app(holder, learner, stores, runs)
    schedulers = {id(h._scheduler): h._scheduler for h in (holder if isinstance(holder, list) else [holder])}
    if len(schedulers) != 1 or None in schedulers.values() or threading.current_thread() is not threading.main_thread():
        uvicorn.run(app, host=host, port=port, log_level=log_level)
        return
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level=log_level))
    web = threading.Thread(target=server.run, name="forgetlab-http", daemon=True)

    def stop(*_):
        server.should_exit = True

    previous = signal.signal(signal.SIGTERM, stop)
    web.start()
    try:
        next(iter(schedulers.values())).run_here(until=lambda: not web.is_alive())
    except KeyboardInterrupt:
        pass
    finally:
        server.should_exit = True
        web.join(timeout=30)
        signal.signal(signal.SIGTERM, previous)
    if not server.started:
        raise UserError(f"--host {host} --port {port}: the HTTP server did not start (its message is above)")
