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
# Events a subscriber may have waiting before it is dropped (the whole benchmark broadcast of 100 fits).
QUEUE_SIZE = 1024
MAX_RATE = 10_000
MAX_SECONDS = 3600

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


# The queues of the open /broadcast streams, and the publisher tasks running (kept so they are not collected).
subscribers: set[asyncio.Queue] = set()
publishers: set[asyncio.Task] = set()


@app.get("/broadcast")
async def broadcast() -> StreamingResponse:
    # Registered here, before the response head is sent, so a client that has the head misses nothing after it.
    queue: asyncio.Queue = asyncio.Queue(maxsize=QUEUE_SIZE)
    subscribers.add(queue)

    async def events():
        try:
            while True:
                item = await queue.get()
                if item is None:
                    return
                yield item
        finally:
            subscribers.discard(queue)

    return StreamingResponse(events(), media_type="text/event-stream")


def publish(item: str) -> None:
    for queue in list(subscribers):
        try:
            queue.put_nowait(item)
        except asyncio.QueueFull:
            # Too slow: drop it. Make room for the end marker so that its stream ends instead of stalling.
            subscribers.discard(queue)
            queue.get_nowait()
            queue.put_nowait(None)


async def run_broadcast(rate: int, seconds: int) -> None:
    loop = asyncio.get_running_loop()
    started = loop.time()
    for i in range(rate * seconds):
        delay = started + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        t_us = time.time_ns() // 1000
        publish(f'event: update\nid: {i}\ndata: {{"seq": {i}, "t_us": {t_us}}}\n\n')


@app.post("/broadcast/start")
async def broadcast_start(
    rate: int = Query(10, ge=1, le=MAX_RATE), seconds: int = Query(10, ge=1, le=MAX_SECONDS)
) -> dict:
    task = asyncio.create_task(run_broadcast(rate, seconds))
    publishers.add(task)
    task.add_done_callback(publishers.discard)
    return {"events": rate * seconds, "subscribers": len(subscribers)}
