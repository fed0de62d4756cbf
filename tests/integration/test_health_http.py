"""The worker processes' own /healthz, /readyz and /metrics (`profiles ingest` and `relay`
with --metrics-port; `profiles project --port` is tested in test_projector_outage)."""

from __future__ import annotations

import threading

import httpx

from adapters.settings import Settings
from adapters.telemetry import setup_telemetry
from api.health_http import HealthServer
from api.kafka_workers import Workers


def test_a_worker_process_is_ready_while_its_workers_run_and_not_once_one_has_stopped() -> None:
    workers = Workers()
    release = threading.Event()
    workers.start("relay-events", release.wait)
    workers.start("relay-segments", lambda: None)  # ends at once, as on an error
    workers.threads[1].join()
    telemetry = setup_telemetry(Settings())
    server = HealthServer("127.0.0.1", 0, telemetry, workers.readiness, "relay").start()
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}") as http:
            assert http.get("/healthz").json() == {"status": "ok", "process": "relay"}
            ready = http.get("/readyz")
            assert ready.status_code == 503
            assert ready.json() == {
                "status": "unavailable",
                "relay-events": "ok",
                "relay-segments": "stopped",
            }
            telemetry.events_appended.add(3)
            assert "profiles_events_appended_total" in http.get("/metrics").text
            assert http.get("/nope").status_code == 404
    finally:
        server.close()
        release.set()
        workers.stop()
        telemetry.shutdown()
