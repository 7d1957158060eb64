"""Small HTTP helpers shared by every vendor sandbox."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Self

from waitress import wasyncore
from waitress.server import create_server
from werkzeug.wrappers import Request, Response

WsgiApp = Callable[..., Any]
RequestRecord = tuple[str, str, int]


def json_response(payload: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    """Serialise ``payload`` as a JSON response."""
    return Response(
        json.dumps(payload, separators=(",", ":")),
        status=status,
        headers=dict(headers or {}),
        mimetype="application/json",
    )


def read_json_object(request: Request) -> dict[str, Any] | None:
    """Return the body as a JSON object, or None when it is missing, malformed or not an object."""
    body = request.get_json(force=True, silent=True)
    return body if isinstance(body, dict) else None


class RequestLog(Sequence[RequestRecord]):
    """Thread-safe, append-only list of ``(method, path, status)`` records."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[RequestRecord] = []

    def append(self, record: RequestRecord) -> None:
        with self._lock:
            self._items.append(record)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def __getitem__(self, index):  # type: ignore[override]
        with self._lock:
            return self._items[index]

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __iter__(self) -> Iterator[RequestRecord]:
        # Iterate over a copy so concurrent appends cannot disturb the caller.
        with self._lock:
            return iter(list(self._items))

    def __repr__(self) -> str:
        return f"RequestLog({list(self)!r})"


# Requests served at once per server: a vendor's slow answers (latency, late answers, client timeouts)
# each hold one while the rest go on; a batch's orders side by side make ~30 calls at once.
SERVE_THREADS = 48


def serve(wsgi_app: WsgiApp, host: str = "127.0.0.1", port: int = 0) -> tuple[str, Callable[[], None]]:
    """Serve ``wsgi_app`` from a daemon thread; return ``(base_url, stop_fn)``.

    ``port=0`` picks a free port. ``stop_fn`` is idempotent. Waitress keeps a connection open between
    requests (HTTP/1.1), as the vendors' servers do: werkzeug's development server answers every
    request with ``Connection: close``, so each call of a client opened a new connection, which the
    client's pool reuses in production.
    """
    server = create_server(wsgi_app, host=host, port=port, threads=SERVE_THREADS, connection_limit=1000,
                           ident="sandbox", expose_tracebacks=False)
    stopped = threading.Event()

    def run() -> None:
        # waitress's own loop runs while any socket is open; this one ends on stop, in its own thread (a
        # socket closed by another thread while this one waits in select() fails the wait: EBADF)
        while not stopped.is_set():
            wasyncore.loop(timeout=1, map=server._map, use_poll=server.adj.asyncore_use_poll, count=1)
        wasyncore.close_all(server._map, ignore_all=True)  # the listener and every open connection

    thread = threading.Thread(target=run, name=f"sandbox-{server.effective_port}", daemon=True)
    thread.start()

    def stop() -> None:
        if stopped.is_set():
            return
        stopped.set()
        # wakes the loop; OSError: the loop saw ``stopped`` after its last wait and closed the trigger already
        with contextlib.suppress(OSError):
            server.pull_trigger()
        thread.join(timeout=5)
        # idle request threads end at once; one still inside a slow answer is a daemon, left to finish
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=1)

    return f"http://{host}:{server.effective_port}", stop


ADMIN_PREFIX = "/_sandbox/"
ANSWER_LATE_KEY = "switchyard.sandbox.answer_late_seconds"  # set on a request by FaultInjector.apply


class SandboxApp:
    """What every vendor sandbox shares: the WSGI entry, which answers and logs every vendor-API
    request (method, path, status) so tests can count calls (the ``/_sandbox/`` admin endpoints are
    not logged), and the lifecycle: serve on loopback, stop, or use as a context manager."""

    requests: RequestLog
    base_url: str | None = None
    _stop: Callable[[], None] | None = None

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> str:
        """Start a threaded HTTP server in the background and return its base URL."""
        if self._stop is not None:
            raise RuntimeError(f"sandbox already serving at {self.base_url}")
        self.base_url, self._stop = serve(self.wsgi_app, host, port)
        return self.base_url

    def stop(self) -> None:
        if self._stop is not None:
            self._stop()
        self._stop, self.base_url = None, None

    def __enter__(self) -> Self:
        if self._stop is None:
            self.serve()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _handle(self, request: Request) -> Response:
        raise NotImplementedError

    def wsgi_app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        request = Request(environ)
        response = self._handle(request)
        delay = request.environ.get(ANSWER_LATE_KEY)
        if delay:  # a write the fault plan chose to answer after the client gave up (faults.py)
            time.sleep(float(delay))
        if not request.path.startswith(ADMIN_PREFIX):
            self.requests.append((request.method, request.path, response.status_code))
        return response(environ, start_response)
