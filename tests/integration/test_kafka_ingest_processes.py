"""`profiles ingest` in several processes: one consumer group sharing the partitions."""

from __future__ import annotations

import re
import signal
import subprocess
import threading
import time

import pytest

from adapters.settings import Settings
from api.cli import main
from tests.integration.kafka_support import (
    PATIENCE,
    alive,
    children_of,
    event_counts,
    ingest_process,
    interaction,
    kafka_settings,
    produce,
    wait_consumed,
)

MESSAGES = 3_000
ASSIGNED = re.compile(r"\[(ingest \d+)\]: assigned \{([^}]*)\}")


class AssignmentLog:
    """The latest partitions each child logged as assigned to it."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.latest: dict[str, set[int]] = {}
        self.lock = threading.Lock()
        threading.Thread(target=self._read, args=(process,), daemon=True).start()

    def _read(self, process: subprocess.Popen[bytes]) -> None:
        assert process.stderr is not None
        for line in process.stderr:
            found = ASSIGNED.search(line.decode(errors="replace"))
            if found:
                with self.lock:
                    self.latest[found[1]] = {int(p) for p in re.findall(r"(\d+):", found[2])}

    def shares(self) -> list[set[int]]:
        with self.lock:
            return [held for held in self.latest.values() if held]


def test_two_processes_share_the_partitions_and_store_each_message_once(
    settings: Settings, kafka_bootstrap: str
) -> None:
    settings = kafka_settings(settings, kafka_bootstrap)  # three partitions
    messages = [(f"p{n % 50}", interaction(f"p-{n}", f"p{n % 50}")) for n in range(MESSAGES)]
    process = ingest_process(settings, processes=2, batch=100, stderr=subprocess.PIPE)
    log = AssignmentLog(process)
    try:
        produce(settings, messages)
        wait_consumed(settings, MESSAGES)
        deadline = time.monotonic() + PATIENCE
        while len(log.shares()) < 2:  # both children hold partitions once the group settles
            assert time.monotonic() < deadline, f"the children never shared: {log.latest}"
            time.sleep(0.05)
        first, second = log.shares()
        assert not first & second, "two consumers held the same partition"
        assert first | second == {0, 1, 2}
        assert event_counts(settings)["InteractionRecorded"] == MESSAGES
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0, "a clean stop exits 0"


def test_a_child_that_dies_stops_the_command_with_exit_1(
    settings: Settings, kafka_bootstrap: str
) -> None:
    """As a one-process worker that fails: the process manager restarts the whole command."""
    settings = kafka_settings(settings, kafka_bootstrap)
    process = ingest_process(settings, processes=2, batch=100)
    try:
        deadline = time.monotonic() + PATIENCE
        consumers: list[int] = []
        while len(consumers) < 2:
            assert time.monotonic() < deadline, "the consumer processes never started"
            consumers = [c for c in children_of(process.pid) if _is_consumer(c)]
            time.sleep(0.05)
        victim, other = consumers
        subprocess.run(["kill", "-9", str(victim)], check=True)
        assert process.wait(timeout=PATIENCE) == 1
        assert not alive(other), "the surviving consumer was left running"
    finally:
        if process.poll() is None:
            process.kill()


def _is_consumer(pid: int) -> bool:
    """A spawned ingest child, not multiprocessing's resource tracker."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            return b"spawn_main" in cmdline.read()
    except OSError:
        return False


def test_fewer_than_one_process_is_refused_with_the_option_named(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://unused@127.0.0.1:1/unused")
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    assert main(["ingest", "--processes", "0"]) == 2
    assert "--processes 0 must be at least 1" in capsys.readouterr().out
