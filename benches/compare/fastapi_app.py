"""The comparison's FastAPI server: idiomatic StreamingResponse over an async generator.

Run under uvicorn, e.g.

    uvicorn fastapi_app:app --host 127.0.0.1 --port 18403 --loop uvloop --http httptools --no-access-log

/stream?n=N sends N events (default 1000) and ends; /idle sends one event, then a comment every 15 s until the
client leaves. Every event is `event: update`, `id: i`, `data: {"count": i, "time": <unix seconds>}`, byte for
byte what the other servers send (repr of a float is its shortest round-trip form, as in Rust).
"""

import asyncio
import time

from fastapi import FastAPI, Query
from fastapi.responses import StreamingResponse

MAX_EVENTS = 10_000_000
KEEP_ALIVE_SECONDS = 15

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


def update(i: int) -> str:
    return f'event: update\nid: {i}\ndata: {{"count": {i}, "time": {time.time()!r}}}\n\n'


@app.get("/stream")
async def stream(n: int = Query(1000, ge=0, le=MAX_EVENTS)) -> StreamingResponse:
    async def events():
        for i in range(n):
            yield update(i)

    return StreamingResponse(events(), media_type="text/event-stream")


@app.get("/idle")
async def idle() -> StreamingResponse:
    async def events():
        yield update(0)
        while True:
            await asyncio.sleep(KEEP_ALIVE_SECONDS)
            yield ": keep-alive\n\n"

    return StreamingResponse(events(), media_type="text/event-stream")
