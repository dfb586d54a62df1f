"""The WebSocket routes: live tracking records of one job or of every job of one flow.

Protocol (server to client, JSON text messages):

- first ``{"type": "snapshot", "job": <JobSummary or null>, "records": [...]}``: the records
  kept so far (per job in ``seq`` order);
- then ``{"type": "records", "records": [...]}`` for everything that happens next, with no
  record missing or repeated between the snapshot and the live stream;
- ``{"type": "error", "error": {...}}`` then close 4404 when the job or flow is unknown (the
  handshake was authenticated first, see ``_security``).

Close codes: 1008 refused handshake (servers without the ASGI denial-response extension),
1009 client message too big, 1013 subscriber too slow (it fell ``ws_queue_size`` records
behind, or a send stalled), 4404 unknown job or flow. Clients may send ``ping`` texts (answered
with ``{"type": "pong"}``); anything else is ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import TYPE_CHECKING

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from ._live import Subscriber

if TYPE_CHECKING:
    from ._app import ServerContext

__all__ = ["router"]

router = APIRouter()

_BATCH = 1000
SEND_TIMEOUT = 30.0
"""Seconds one send may take before the subscriber counts as stalled (close 1013)."""


def _ctx(websocket: WebSocket) -> ServerContext:
    ctx: ServerContext = websocket.app.state.routilux
    return ctx


async def _refuse(websocket: WebSocket, code: str, message: str) -> None:
    await websocket.send_text(json.dumps(
        {"type": "error", "error": {"code": code, "message": message, "details": None}}))
    await websocket.close(4404, code)


@router.websocket("/api/ws/jobs/{job_id}", name="ws_job")
async def ws_job(websocket: WebSocket, job_id: str) -> None:
    """Live tracking records of one job (snapshot first)."""
    ctx = _ctx(websocket)
    state = await ctx.adapter.call(ctx.runtime.get_job, job_id)
    await websocket.accept(subprotocol=websocket.scope["state"].get("subprotocol"))
    if state is None and not ctx.sink.knows_job(job_id):
        await _refuse(websocket, "unknown_job", f"no job {job_id!r} in this server")
        return
    from ._api import job_summary

    summary = job_summary(state).model_dump_json() if state is not None else "null"
    sub, snapshot = ctx.sink.subscribe(job_id=job_id)
    await _stream(websocket, ctx, sub, snapshot, summary)


@router.websocket("/api/ws/flows/{flow}", name="ws_flow")
async def ws_flow(websocket: WebSocket, flow: str) -> None:
    """Live tracking records of every job of one flow (snapshot of the jobs still kept)."""
    ctx = _ctx(websocket)
    found = await ctx.adapter.call(
        lambda: ctx.adapter.flows.get(flow) if flow in ctx.adapter.flows else None)
    await websocket.accept(subprotocol=websocket.scope["state"].get("subprotocol"))
    if found is None:
        await _refuse(websocket, "unknown_flow", f"no flow registered under {flow!r}")
        return
    sub, snapshot = ctx.sink.subscribe(flow=found.flow_id)
    await _stream(websocket, ctx, sub, snapshot, "null")


async def _stream(
    websocket: WebSocket, ctx: ServerContext, sub: Subscriber, snapshot: list[str], job: str
) -> None:
    try:
        await websocket.send_text(
            f'{{"type":"snapshot","job":{job},"records":[{",".join(snapshot)}]}}')
        pump = asyncio.ensure_future(_pump(websocket, sub))
        listen = asyncio.ensure_future(_listen(websocket, ctx.settings.max_ws_message_bytes))
        done, pending = await asyncio.wait({pump, listen}, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                await task
        for task in done:
            with contextlib.suppress(WebSocketDisconnect, RuntimeError):
                task.result()
    except WebSocketDisconnect:
        pass
    finally:
        ctx.sink.unsubscribe(sub)
        if websocket.application_state is WebSocketState.CONNECTED and \
                websocket.client_state is WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await websocket.close(1000)


async def _pump(websocket: WebSocket, sub: Subscriber) -> None:
    queue = sub.queue
    while True:
        text = await queue.get()
        if sub.overflowed:
            await websocket.close(1013, "subscriber too slow")
            return
        batch = [text]
        while len(batch) < _BATCH:
            try:
                batch.append(queue.get_nowait())
            except asyncio.QueueEmpty:
                break
        try:
            async with asyncio.timeout(SEND_TIMEOUT):
                await websocket.send_text(f'{{"type":"records","records":[{",".join(batch)}]}}')
        except TimeoutError:
            sub.fail()
            await websocket.close(1013, "subscriber stalled")
            return


async def _listen(websocket: WebSocket, limit: int) -> None:
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("text") or message.get("bytes") or ""
        if len(data) > limit:
            await websocket.close(1009, "message too big")
            return
        if data == "ping":
            await websocket.send_text('{"type":"pong"}')
