"""The hostile side of the `abuse` scenario, run as a process of its own so that its CPU never
shares an interpreter with the legitimate client it disturbs:

python -m bench.abuse_client CONFIG_JSON   ({"port", "path", "seconds", "threads", "timeout",
                                            "body_limit"}; prints one JSON object)

Closed-loop threads cycle through the request kinds, each judged by `judge`.

The exchange is a socket of its own rather than urllib because a server may answer a 10 MB
body with 413 before it has read it (it should: a body over the limit is refused, never held)
and close; urllib would still be writing and report a broken pipe instead of the answer.
"""

from __future__ import annotations

import json
import random
import select
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

from graphql import get_introspection_query

from bench.common import latency_summary

Build = Callable[[], tuple[bytes, str]]  # (body, content type)
JSON_TYPE = "application/json"
_CHUNK = 262_144


class NoAnswer(Exception):
    """The connection failed or timed out before a whole HTTP answer arrived."""


def exchange(
    port: int, path: str, body: bytes, content_type: str, timeout: float
) -> tuple[int, bytes]:
    """POST `body`; (status, answer body). Reads while it writes, so that an answer sent
    before the body was taken (413) is heard, and stops writing once an answer begins."""
    deadline = time.monotonic() + timeout
    try:
        sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except OSError as error:
        raise NoAnswer(f"connect: {error!r}") from None
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode()
    pending = memoryview(head + body)
    received = bytearray()
    try:
        sock.setblocking(False)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise NoAnswer(f"no whole answer within {timeout:.0f}s ({len(received)} bytes)")
            writers = [sock] if pending else []
            readable, writable, _ = select.select([sock], writers, [], left)
            if readable:
                try:
                    chunk = sock.recv(65_536)
                except (ConnectionResetError, BlockingIOError) as error:
                    if isinstance(error, BlockingIOError):
                        continue
                    chunk = b""
                if not chunk:
                    break
                received += chunk
                pending = pending[:0]  # the answer has begun: the rest of the body is moot
                if _complete(received):
                    break
            elif writable:
                try:
                    sent = sock.send(pending[:_CHUNK])
                except BlockingIOError:
                    continue
                except (BrokenPipeError, ConnectionResetError):
                    pending = pending[:0]  # refused mid-body: the answer may still be there
                    continue
                pending = pending[sent:]
    finally:
        sock.close()
    return _parse(bytes(received))


def _complete(received: bytearray) -> bool:
    end = received.find(b"\r\n\r\n")
    if end < 0:
        return False
    for line in bytes(received[:end]).split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(received) - end - 4 >= int(value.strip())
    return False  # no length: it ends with the connection


def _parse(received: bytes) -> tuple[int, bytes]:
    end = received.find(b"\r\n\r\n")
    if end < 0:
        raise NoAnswer(f"the connection ended before an answer ({len(received)} bytes)")
    status_line = received[: received.find(b"\r\n")].split()
    try:
        status = int(status_line[1])
    except (IndexError, ValueError):
        raise NoAnswer(f"not an HTTP answer: {received[:80]!r}") from None
    return status, received[end + 4 :]


def judge(status: int, body: bytes) -> tuple[str, bool]:
    """(outcome, kept the promise): 200 with data or coded errors, 400/413/429 with coded
    errors. Anything else (5xx, an error without extensions.code, no JSON) breaks it."""
    try:
        answer = json.loads(body)
    except ValueError:
        return f"{status} not JSON", False
    if not isinstance(answer, dict):
        return f"{status} JSON not an object", False
    errors = answer.get("errors")
    if not errors:
        return f"{status} ok", status == 200 and "data" in answer
    if not isinstance(errors, list):
        return f"{status} errors not a list", False
    codes = set()
    for error in errors:
        code = error.get("extensions", {}).get("code") if isinstance(error, dict) else None
        if not isinstance(code, str):
            return f"{status} error without extensions.code", False
        codes.add(code)
    return f"{status} {'+'.join(sorted(codes))}", status in (200, 400, 413, 429)


def _doc(query: str, variables: object = None) -> tuple[bytes, str]:
    payload: dict[str, object] = {"query": query}
    if variables is not None:
        payload["variables"] = variables
    return json.dumps(payload).encode(), JSON_TYPE


def _tag() -> str:
    return "a" + uuid.uuid4().hex[:8]


def _aliases(field: str, count: int) -> tuple[bytes, str]:
    tag = _tag()  # a new text each time: no cache holds it
    return _doc("{ " + " ".join(f"{tag}{n}: {field}" for n in range(count)) + " }")


def _padded(size: int) -> bytes:
    """A JSON body of `size` bytes (a valid request with a long variable)."""
    head = b'{"query": "{ __typename }", "variables": {"pad": "'
    tail = b'"}}'
    return head + b"x" * (size - len(head) - len(tail)) + tail


def _deep_variables(depth: int) -> tuple[bytes, str]:
    nested = "[" * depth + "]" * depth
    text = '{"query": "query($v: JSON) { __typename }", "variables": {"v": ' + nested + "}}"
    return text.encode(), JSON_TYPE


def _deep_introspection(levels: int) -> tuple[bytes, str]:
    inner = "name " + "ofType { " * levels + "name" + " }" * levels
    return _doc("{ __schema { types { fields { type { " + inner + " } } } } }")


def _fresh_profiles(count: int) -> tuple[bytes, str]:
    ids = [uuid.uuid4().hex for _ in range(count)]
    query = "query($ids: [ID!]!) { profiles(customerIds: $ids) { customerId traits segments } }"
    return _doc(query, {"ids": ids})


def _fresh_profile_aliases(count: int) -> tuple[bytes, str]:
    tag = _tag()
    fields = " ".join(
        f'{tag}{n}: profile(customerId: "{uuid.uuid4().hex}") {{ traits segments }}'
        for n in range(count)
    )
    return _doc("{ " + fields + " }")


def _distinct_text() -> tuple[bytes, str]:
    tag = _tag()
    customer = uuid.uuid4().hex
    return _doc(f'query Q{tag} {{ {tag}: profile(customerId: "{customer}") {{ traits }} }}')


def _long_comment(size: int) -> tuple[bytes, str]:
    return _doc("{ __typename } #" + "c" * size)


def hostile_kinds(body_limit: int) -> dict[str, Build]:
    """Request kinds by name, each building a new body when called."""
    big, large = _padded(10_000_000), _padded(2_000_000)
    introspection = _doc(get_introspection_query())
    near_limit = max(1_024, body_limit - 20_000)
    return {
        "alias_segments_2000": lambda: _aliases("segments { id }", 2_000),
        "alias_typename_20000": lambda: _aliases("__typename", 20_000),
        "body_10mb": lambda: (big, JSON_TYPE),
        "body_2mb": lambda: (large, JSON_TYPE),
        "comment_near_body_limit": lambda: _long_comment(near_limit),
        "json_null": lambda: (b"null", JSON_TYPE),
        "json_number": lambda: (b"12345", JSON_TYPE),
        "not_utf8": lambda: (b'{"query": "{ __typename \xff\xfe }"}', JSON_TYPE),
        "variables_10000_deep": lambda: _deep_variables(10_000),
        "introspection_30_deep": lambda: _deep_introspection(30),
        "unknown_field": lambda: _doc(f"{{ {_tag()} }}"),
        "invalid_literal": lambda: _doc("{ profile(customerId: true) { traits } }"),
        "int_literal_id": lambda: _doc("{ profile(customerId: 5) { traits } }"),
        "syntax_error": lambda: _doc("{ profile(customerId: " + random.choice(["", '"x"', "{"])),
        "profiles_500_fresh_ids": lambda: _fresh_profiles(500),
        "profile_100_aliases_fresh": lambda: _fresh_profile_aliases(100),
        "introspection_full": lambda: introspection,
        "distinct_text": _distinct_text,
    }


class Tally:
    """What each kind got: outcomes, latencies, and a few examples of broken promises."""

    def __init__(self, kinds: list[str]) -> None:
        self.lock = threading.Lock()
        self.outcomes: dict[str, Counter[str]] = {k: Counter() for k in kinds}
        self.seconds: dict[str, list[float]] = {k: [] for k in kinds}
        self.failures: dict[str, int] = dict.fromkeys(kinds, 0)
        self.examples: dict[str, list[str]] = {k: [] for k in kinds}

    def add(self, kind: str, took: float, outcome: str, kept: bool, body: bytes) -> None:
        with self.lock:
            self.outcomes[kind][outcome] += 1
            self.seconds[kind].append(took)
            if not kept:
                self.failures[kind] += 1
                if len(self.examples[kind]) < 3:
                    self.examples[kind].append(f"{outcome}: {body[:300]!r}")

    def as_dict(self, seconds: float) -> dict[str, Any]:
        kinds: dict[str, dict[str, Any]] = {
            k: {
                "requests": len(self.seconds[k]),
                "failures": self.failures[k],
                "outcomes": dict(self.outcomes[k]),
                "latency": latency_summary(self.seconds[k]),
                "examples": self.examples[k],
            }
            for k in self.outcomes
        }
        requests = sum(v["requests"] for v in kinds.values())
        failures = sum(v["failures"] for v in kinds.values())
        return {
            "seconds": seconds,
            "requests": requests,
            "failures": failures,
            "answered_per_second": (requests - failures) / seconds if seconds else 0.0,
            "kinds": kinds,
        }


def _hammer(
    config: dict[str, Any], kinds: dict[str, Build], start: int, stop: threading.Event,
    tally: Tally,
) -> None:  # fmt: skip
    names = list(kinds)
    n = start
    while not stop.is_set():
        kind = names[n % len(names)]
        n += 1
        body, content_type = kinds[kind]()
        started = time.monotonic()
        try:
            status, answer = exchange(
                config["port"], config["path"], body, content_type, config["timeout"]
            )
        except NoAnswer as error:
            tally.add(kind, time.monotonic() - started, "no answer", False, str(error).encode())
            continue
        outcome, kept = judge(status, answer)
        tally.add(kind, time.monotonic() - started, outcome, kept, answer)


def main(config: dict[str, Any]) -> dict[str, Any]:
    kinds = hostile_kinds(int(config["body_limit"]))
    tally = Tally(list(kinds))
    stop = threading.Event()
    threads = [
        threading.Thread(target=_hammer, args=(config, kinds, i * 3, stop, tally), daemon=True)
        for i in range(int(config["threads"]))
    ]
    started = time.monotonic()
    for thread in threads:
        thread.start()
    time.sleep(float(config["seconds"]))
    stop.set()
    for thread in threads:
        thread.join(float(config["timeout"]) + 5)
    return tally.as_dict(time.monotonic() - started)


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
