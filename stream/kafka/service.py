"""The Faust side of the worker: the service that runs the batch reader, and the health endpoints.

:class:`ReaderService` is a Faust (mode) service: the app starts it with itself and stops it on
SIGTERM/SIGINT like any other; it runs :class:`~driftline.stream.kafka.batch_reader.BatchReader` on a
thread of its own, so the event loop stays free for Faust's own work — the web server of the health
endpoints, timers, agents. A reader that fails crashes the app, which then exits non-zero.

``GET /healthz`` (liveness) answers 200 while the reader's loop turns; ``GET /readyz`` (readiness)
answers 200 once the worker has joined its group, restored every assigned partition from its
checkpoint and its checkpoints go through (503 during a database outage). Kubernetes probes them.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import faust
from mode import Service

from .batch_reader import BatchReader

__all__ = ["ReaderService", "add_health_pages"]

log = logging.getLogger("driftline.worker")

#: The reader's loop turns at least every batch wait (0.25 s by default); a checkpoint can hold it
#: for seconds on a slow database, and a rebalance callback for longer. Liveness fails only after this.
LIVENESS_SECONDS = 60.0


class ReaderService(Service):
    """Runs the batch reader on its own thread for as long as the Faust app runs."""

    def __init__(self, app: faust.App, reader: BatchReader, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.app = app
        self.reader = reader
        self._thread: threading.Thread | None = None

    async def on_start(self) -> None:
        loop = asyncio.get_running_loop()

        def run() -> None:
            try:
                self.reader.run()
            except BaseException as exc:  # noqa: BLE001 - whatever stopped the reader must stop the app, and say why
                log.error("the reader stopped: %s", exc)
                asyncio.run_coroutine_threadsafe(self.app.crash(exc), loop)

        self._thread = threading.Thread(target=run, name="driftline-reader", daemon=True)
        self._thread.start()

    async def on_stop(self) -> None:
        self.reader.stop()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and self.reader.alive(LIVENESS_SECONDS)


def add_health_pages(app: faust.App, service: ReaderService) -> None:
    """``/healthz`` and ``/readyz`` on the app's web server."""

    @app.page("/healthz")
    async def healthz(web: Any, request: Any) -> Any:
        alive = service.alive
        return web.json({"alive": alive}, status=200 if alive else 503)

    @app.page("/readyz")
    async def readyz(web: Any, request: Any) -> Any:
        ready = service.alive and service.reader.ready
        return web.json({"ready": ready}, status=200 if ready else 503)
