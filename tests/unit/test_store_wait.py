"""The log of an outage stays short, and the projector's health says what is wrong."""

from __future__ import annotations

import logging
import threading

from adapters.store_wait import Outage, Store, await_store, postgres_store, redis_store
from projections.runner import Health


class Seconds:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def logger_with(handler: logging.Handler) -> logging.Logger:
    log = logging.getLogger(f"test.outage.{id(handler)}")
    log.propagate = False
    log.addHandler(handler)
    return log


def test_an_outage_logs_its_first_failure_each_new_error_a_reminder_and_its_end() -> None:
    clock, lines = Seconds(), Lines()
    outage = Outage(
        "waiting for redis at h:6379/0", "redis answers", logger_with(lines), clock=clock
    )
    refused = ConnectionRefusedError("connection refused")
    for _ in range(20):  # twenty tries within 9.5 s: one line
        assert outage.failed(refused) == (
            "waiting for redis at h:6379/0: ConnectionRefusedError: connection refused"
        )
        clock.now += 0.5
    assert len(lines.lines) == 1
    outage.failed(TimeoutError("timed out"))  # a new error is news at once
    clock.now += 0.5
    outage.failed(TimeoutError("timed out"))
    assert len(lines.lines) == 2
    clock.now += 10.5
    outage.failed(TimeoutError("timed out"))  # the same one, ten seconds on: a reminder
    assert lines.lines[-1].endswith("(for 21 s, 23 tries); retrying")
    clock.now += 1
    outage.ended()
    assert lines.lines[-1] == "redis answers after 22.0 s"
    outage.ended()  # nothing was failing: nothing to say
    assert len(lines.lines) == 4


def test_awaiting_a_store_retries_until_it_answers_and_tells_what_it_awaits() -> None:
    answers = iter([OSError("no such file"), OSError("no such file"), None])

    def probe() -> None:
        error = next(answers)
        if error is not None:
            raise error

    heard: list[str] = []
    assert await_store(
        Store("postgres", "/run/pg:5432/profiles", probe), threading.Event(), heard.append
    )
    assert heard == ["waiting for postgres at /run/pg:5432/profiles: OSError: no such file"] * 2


def test_awaiting_a_store_ends_when_stopped() -> None:
    stop = threading.Event()

    def probe() -> None:
        stop.set()
        raise OSError("down")

    assert not await_store(Store("redis", "h:6379/0", probe), stop)


def test_store_addresses_name_host_port_and_database_but_no_password() -> None:
    postgres = postgres_store("postgresql://app:secret@db.internal:6432/profiles")
    assert str(postgres) == "postgres at db.internal:6432/profiles"
    assert str(redis_store("redis://:secret@cache:6380/2")) == "redis at cache:6380/2"
    assert str(redis_store("redis://cache")) == "redis at cache:6379/0"


def test_health_is_ready_only_while_the_loop_gets_on() -> None:
    clock = Seconds()
    health = Health(clock)
    assert health.problem(5) == "starting"
    health.trouble("waiting for postgres at h:5432/p: OperationalError: refused")
    assert health.problem(5) == "waiting for postgres at h:5432/p: OperationalError: refused"
    health.progressed()
    assert health.problem(5) is None
    clock.now += 5.5  # a pass that hangs (a frozen store) makes no progress
    assert health.problem(5) == "no progress for 5.5 s"
