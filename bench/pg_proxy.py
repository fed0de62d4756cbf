"""A TCP proxy in front of Postgres that injects the faults a network and a server can cause.

The service under test connects through it (`url`); the test then makes it lose the reply
to one statement after the server ran it, hold every byte (a frozen server, as the client
sees one), or cut every connection and refuse new ones (an outage), and undo each.
"""

from __future__ import annotations

import contextlib
import select
import socket
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from psycopg.conninfo import conninfo_to_dict


@dataclass
class _Link:
    client: socket.socket
    server: socket.socket
    # Once set: the server's bytes are dropped, and the client is cut off at this instant.
    losing_since: float | None = None
    dropped: bool = False
    closed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
        for sock in (self.client, self.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()


class PostgresProxy:
    def __init__(self, database_url: str) -> None:
        params = conninfo_to_dict(database_url)
        host = str(params.get("host") or "127.0.0.1")
        port = int(params.get("port") or 5432)
        self._upstream: tuple[int, str | tuple[str, int]]
        if host.startswith("/"):
            self._upstream = (socket.AF_UNIX, f"{host}/.s.PGSQL.{port}")
        else:
            self._upstream = (socket.AF_INET, (host, port))
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        user = params.get("user") or "postgres"
        parts = urlsplit(database_url)
        self.url = urlunsplit(("postgresql", f"{user}@127.0.0.1:{self.port}", parts.path, "", ""))
        self._links: list[_Link] = []
        self._lock = threading.Lock()
        self._frozen = threading.Event()
        self._down = False
        self._lose_marker: bytes | None = None
        self._lose_skip = 0
        self.replies_lost = 0
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    # ---------------------------------------------------------------- faults

    def lose_next_reply(self, marker: bytes, *, skip: int = 0) -> None:
        """The next statement whose bytes contain `marker` (after `skip` such statements
        have passed) runs on the server, but its reply is dropped and its client connection
        cut 0.3 s later (time for the server to commit): the client cannot tell whether it
        committed."""
        self._lose_skip = skip
        self._lose_marker = marker

    def freeze(self) -> None:
        """No byte goes either way, and new connections hang: a frozen server."""
        self._frozen.set()

    def thaw(self) -> None:
        self._frozen.clear()

    def cut(self) -> None:
        """Every connection is cut and new ones are refused until `restore`."""
        with self._lock:
            self._down = True
            links, self._links = self._links, []
        for link in links:
            link.close()

    def refuse_new(self) -> None:
        """New connections are refused; those open go on working (connection slots full)."""
        with self._lock:
            self._down = True

    def restore(self) -> None:
        with self._lock:
            self._down = False

    def close(self) -> None:
        self._stop = True
        self.thaw()
        self.cut()
        self._listener.close()

    # ---------------------------------------------------------------- plumbing

    def _accept(self) -> None:
        while not self._stop:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                down = self._down
            if down:
                client.close()
                continue
            threading.Thread(target=self._open, args=(client,), daemon=True).start()

    def _open(self, client: socket.socket) -> None:
        while self._frozen.is_set() and not self._stop:
            time.sleep(0.01)
        family, address = self._upstream
        server = socket.socket(family, socket.SOCK_STREAM)
        try:
            server.connect(address)
        except OSError:
            client.close()
            server.close()
            return
        link = _Link(client, server)
        with self._lock:
            if self._down:
                link.close()
                return
            self._links.append(link)
        threading.Thread(target=self._pump, args=(link,), daemon=True).start()

    def _pump(self, link: _Link) -> None:
        sockets = [link.client, link.server]
        try:
            while not link.closed:
                if link.losing_since is not None and time.monotonic() - link.losing_since > 0.3:
                    break
                if self._frozen.is_set():
                    time.sleep(0.01)
                    continue
                readable, _, _ = select.select(sockets, [], [], 0.05)
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is link.client:
                        marker = self._lose_marker
                        if marker is not None and marker in data:
                            if self._lose_skip > 0:
                                self._lose_skip -= 1
                            else:
                                self._lose_marker = None
                                link.losing_since = time.monotonic()
                        link.server.sendall(data)
                    elif link.losing_since is None:
                        link.client.sendall(data)
                    elif not link.dropped:
                        link.dropped = True  # counted when a reply is in fact thrown away
                        self.replies_lost += 1
        except (OSError, ValueError):
            return
        finally:
            link.close()
            with self._lock, contextlib.suppress(ValueError):
                self._links.remove(link)
