"""A thread's deadline for store calls: refused once past, cut off when it passes."""

from __future__ import annotations

import socket

import pytest

from adapters import deadlines
from adapters.deadlines import DeadlinePassed


def test_a_call_blocked_on_a_socket_is_cut_off_at_the_deadline() -> None:
    ours, theirs = socket.socketpair()  # theirs never answers: a frozen server
    with (
        ours,
        theirs,
        pytest.raises(DeadlinePassed, match="did not answer"),
        deadlines.within(0.2),
        deadlines.guarded(ours.fileno(), "the test"),
    ):
        if not ours.recv(1):  # returns at the deadline: the socket was shut down
            raise OSError("the connection was closed")


def test_a_call_after_the_deadline_is_refused_before_anything_is_sent() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        with (
            deadlines.within(0.0),
            pytest.raises(DeadlinePassed, match="before"),
            deadlines.guarded(ours.fileno(), "the test"),
        ):
            ours.sendall(b"never")
        theirs.setblocking(False)
        with pytest.raises(BlockingIOError):
            theirs.recv(5)


def test_an_inner_deadline_never_outlasts_the_outer_one() -> None:
    with deadlines.within(1.0):
        outer = deadlines.deadline()
        with deadlines.within(60.0):
            assert deadlines.deadline() == outer
        with deadlines.within(0.5):
            inner = deadlines.deadline()
            assert inner is not None and outer is not None and inner < outer
        assert deadlines.deadline() == outer
    assert deadlines.deadline() is None


def test_a_socket_answered_in_time_is_left_alone() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs, deadlines.within(5.0), deadlines.guarded(ours.fileno(), "the test"):
        theirs.sendall(b"ok")
        assert ours.recv(2) == b"ok"
        ours.sendall(b"still open")
        assert theirs.recv(10) == b"still open"
