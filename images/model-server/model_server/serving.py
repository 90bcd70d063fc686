"""The server's lifecycle: listen, load, serve, drain, shut down.

Drain (``MODEL_GRACEFUL_DRAIN=true``, the default) is what makes a rolling
update lossless. It starts on ``POST /drain`` from the preStop hook or on
SIGTERM, whichever comes first, and then for ``MODEL_DRAIN_SECONDS``:

- readiness answers 503, so the pod leaves the Service's endpoints;
- the listening socket stays open and new connections are still served,
  because kube-proxy removes the endpoint some time after the pod is told
  to stop;
- every response carries ``Connection: close`` and its connection is
  closed after it, so keep-alive clients reconnect (to another pod).

Then (on SIGTERM; a drain started by ``/drain`` waits for it) the listener
closes, idle connections close, requests under way get up to
``MODEL_SHUTDOWN_TIMEOUT_SECONDS`` to finish, and the process exits 0. With
graceful drain off, SIGTERM drops every connection and exits at once: the
negative control. SIGINT (Ctrl+C) skips the drain period; a second signal
stops at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
import time
from collections.abc import Coroutine

from model_server import app as app_module
from model_server import model, protocol, train, versions
from model_server.settings import Settings

log = logging.getLogger(__name__)


class ModelServer:
    """One server process: an ``App`` behind a listening socket, with a drain."""

    def __init__(self, settings: Settings, metadata: train.Metadata) -> None:
        self.settings = settings
        self.app = app_module.App(settings, metadata)
        self.app.on_drain = self.begin_drain
        self.hub = protocol.Hub(self.app, settings)
        self.port = 0
        """The bound port, known after ``start``."""
        self.exit_code = 0
        self._drain_deadline: float | None = None
        self._stop: asyncio.Event | None = None
        self._hard_stop = False
        self._stop_scheduled = False
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def serve(self) -> int:
        """Run until stopped; return the process exit code."""
        await self.start()
        assert self._stop is not None
        await self._stop.wait()
        await self.shutdown()
        return self.exit_code

    async def start(self) -> None:
        """Bind, install signal handlers and start loading the model."""
        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._server = await loop.create_server(
            lambda: protocol.HttpConnection(self.hub),
            host=self.settings.host,
            port=self.settings.port,
            reuse_address=True,
            backlog=1024,
        )
        self.port = self._server.sockets[0].getsockname()[1]
        if threading.current_thread() is threading.main_thread():
            loop.add_signal_handler(signal.SIGTERM, self.on_sigterm)
            loop.add_signal_handler(signal.SIGINT, self.on_sigint)
        self._spawn(self._tick())
        self._spawn(self._load())
        log.info(
            "model-server %s (%s, pod %s, graceful drain %s, drain %ss) listening on http://%s:%d",
            self.app.version,
            self.app.behaviour.value,
            self.settings.pod_name,
            "on" if self.settings.graceful_drain else "off",
            self.settings.drain_seconds,
            self.settings.host,
            self.port,
        )

    def begin_drain(self) -> float:
        """Start draining (idempotent); return the seconds left in the drain period."""
        now = time.monotonic()
        if self._drain_deadline is None:
            self._drain_deadline = now + self.settings.drain_seconds
            self.app.draining = True
            log.info("draining for %ss: not ready, Connection: close", self.settings.drain_seconds)
        return max(0.0, self._drain_deadline - now)

    def on_sigterm(self) -> None:
        """SIGTERM: drain, then stop; without graceful drain (or the second time) stop now."""
        if not self.settings.graceful_drain or self._stop_scheduled:
            log.info("SIGTERM: stopping now, dropping connections")
            self.stop(hard=True)
            return
        remaining = self.begin_drain()
        log.info("SIGTERM: stopping in %.1fs", remaining)
        self._stop_scheduled = True
        asyncio.get_running_loop().call_later(remaining, self.stop)

    def on_sigint(self) -> None:
        """SIGINT: stop without a drain period; the second one stops at once."""
        self.stop(hard=self._stop_scheduled)
        self._stop_scheduled = True

    def stop(self, hard: bool = False) -> None:
        """Ask ``serve`` to shut down; ``hard`` drops connections instead of finishing them."""
        self._hard_stop = self._hard_stop or hard
        if self._stop is not None:
            self._stop.set()

    async def shutdown(self) -> None:
        """Close the listener, then the connections; wait for requests under way."""
        if self._server is not None:
            self._server.close()
        for task in self._tasks:
            task.cancel()
        if self._hard_stop:
            self.hub.abort_all()
            return
        self.hub.close_idle()
        deadline = time.monotonic() + self.settings.shutdown_timeout_seconds
        while self.hub.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if self.hub.connections:
            log.warning(
                "shutdown timeout: cutting %d connection(s) with requests under way",
                len(self.hub.connections),
            )
            self.hub.abort_all()
        log.info("stopped")

    def _spawn(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.hub.tick()

    async def _load(self) -> None:
        started = time.monotonic()
        try:
            loaded = await asyncio.to_thread(
                model.load,
                self.settings.model_dir,
                self.app.metadata,
                compile_model=self.settings.model_compile,
            )
        except (model.ModelLoadError, OSError, ValueError) as e:
            log.error("cannot load the model: %s", e)
            self.exit_code = 1
            self.stop(hard=True)
            return
        if self.app.behaviour is versions.Behaviour.SLOW_START:
            log.info("slow-start build: becoming ready in %ss", self.settings.slow_start_seconds)
            await asyncio.sleep(self.settings.slow_start_seconds)
        self.app.model = loaded
        log.info(
            "model loaded in %.2fs (%s predictor)%s",
            time.monotonic() - started,
            "compiled numpy" if loaded.compiled else "scikit-learn",
            "; never-ready build: readiness stays 503"
            if not self.app.ready and not self.app.draining
            else "",
        )


def run(settings: Settings) -> int:
    """Serve in the foreground until a signal; return the exit code."""
    try:
        metadata = model.read_metadata(settings.model_dir)
    except model.ModelLoadError as e:
        log.error("%s", e)
        return 1
    server = ModelServer(settings, metadata)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(server.serve())
    return 130
