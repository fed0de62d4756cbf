"""The HTTP side of a worker process (`profiles project`, `ingest`, `relay`): /healthz,
/readyz and /metrics on a port of its own, served by a thread, so they answer whatever the
worker is doing (waiting for a store included)."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from adapters.store_wait import describe
from adapters.telemetry import Telemetry

logger = logging.getLogger(__name__)

# name -> "ok" or what is wrong; ready when every entry is "ok"
Readiness = Callable[[], Mapping[str, str]]


class HealthServer:
    """`/healthz`: 200 while the process runs. `/readyz`: 200 with every check "ok", else 503
    with what is wrong, as the API's own /readyz answers. `/metrics`: Prometheus text."""

    def __init__(
        self,
        host: str,
        port: int,
        telemetry: Telemetry,
        ready: Readiness,
        process: str,
    ) -> None:
        handler = _handler(telemetry, ready, process)
        self._server = ThreadingHTTPServer((host, port), handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"{process}-http", daemon=True
        )

    def start(self) -> HealthServer:
        self._thread.start()
        logger.info("/healthz, /readyz and /metrics on port %d", self.port)
        return self

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _handler(telemetry: Telemetry, ready: Readiness, process: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/healthz":
                self._json(200, {"status": "ok", "process": process})
            elif path == "/readyz":
                try:
                    checks = dict(ready())
                except Exception as error:  # a probe that breaks says so, not a bare 500
                    checks = {process: f"unavailable: {describe(error)}"}
                fine = all(v == "ok" for v in checks.values())
                status = "ok" if fine else "unavailable"
                self._json(200 if fine else 503, {"status": status, **checks})
            elif path == "/metrics":
                self._send(200, "text/plain; version=0.0.4", telemetry.prometheus_text())
            else:
                self._json(
                    404, {"status": "not found", "paths": ["/healthz", "/readyz", "/metrics"]}
                )

        def _json(self, status: int, body: object) -> None:
            self._send(status, "application/json", json.dumps(body).encode())

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # probes every few seconds: not worth a log line each

    return Handler
