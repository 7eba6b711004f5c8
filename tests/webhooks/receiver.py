"""A real merchant endpoint on loopback for the dispatcher tests.

A Starlette app under uvicorn in a thread of its own (its own event loop), so the
dispatcher's requests cross a real TCP socket while the test's loop keeps running. It records
every request in arrival order, answers with programmable status codes, can hold requests
open, and notes any moment at which two requests with one webhook-id were in flight at once.
"""

import asyncio
import json
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

PATH = "/hooks/nicepay"


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    answered: int | None = None  # the status code sent back; None while held or in flight
    finished: bool = False

    @property
    def webhook_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def payload(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded

    @property
    def type(self) -> str:
        return str(self.payload["type"])

    @property
    def reference_no(self) -> str:
        return str(self.payload["data"]["reference_no"])


@dataclass
class Receiver:
    url: str = ""
    requests: list[Received] = field(default_factory=list)
    overlaps: list[str] = field(default_factory=list)  # webhook-ids seen twice in flight at once
    answer: Callable[[Received], int] = lambda _: 200
    scripted: deque[int] = field(default_factory=deque)  # consumed first, then `answer`
    delay: float = 0.0  # seconds before answering (keeps requests in flight)
    reply_text: str = "ok"
    hold: int = 0  # how many of the next requests to hold open until `release()`
    _in_flight: Counter[str] = field(default_factory=Counter)
    _released: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def script(self, *codes: int) -> None:
        with self._lock:
            self.scripted.extend(codes)

    def release(self) -> None:
        self._released.set()

    def received(self) -> list[Received]:
        with self._lock:
            return list(self.requests)

    def delivered(self) -> list[Received]:
        """Requests answered 2xx, in arrival order."""
        return [r for r in self.received() if r.answered is not None and 200 <= r.answered < 300]

    async def handle(self, request: Request) -> PlainTextResponse:
        body = await request.body()
        record = Received(dict(request.headers), body)
        with self._lock:
            self.requests.append(record)
            webhook_id = request.headers.get("webhook-id", "")
            if self._in_flight[webhook_id]:
                self.overlaps.append(webhook_id)
            self._in_flight[webhook_id] += 1
            held = self.hold > 0
            self.hold -= held
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            if held:  # released from the test's thread
                await asyncio.to_thread(self._released.wait)
            with self._lock:
                status = self.scripted.popleft() if self.scripted else self.answer(record)
                record.answered = status
        finally:
            with self._lock:
                self._in_flight[webhook_id] -= 1
                record.finished = True
        return PlainTextResponse(self.reply_text, status_code=status)


@contextmanager
def running_receiver() -> Iterator[Receiver]:
    receiver = Receiver()
    app = Starlette(routes=[Route(PATH, receiver.handle, methods=["POST"])])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="off", access_log=False, timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the loopback receiver did not start")
        time.sleep(0.01)
    receiver.url = f"http://127.0.0.1:{port}{PATH}"
    try:
        yield receiver
    finally:
        receiver.release()
        server.should_exit = True
        thread.join(15)
        sock.close()
