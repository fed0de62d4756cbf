"""`profiles ingest` as the kafka bench runs it: the command in its own process, which
processes it is made of and what CPU they used, and when its consumer group has settled."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

from adapters.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
# A child names itself "[ingest K]"; a one-process worker logs without it.
_ASSIGNED = re.compile(r"(?:\[(?P<who>ingest \d+)\])?: assigned \{(?P<map>[^}]*)\}")
_PARTITION = re.compile(r"(\d+):")


def ingest_process(settings: Settings) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "DATABASE_URL": str(settings.database_url),
        "KAFKA_BOOTSTRAP_SERVERS": str(settings.kafka_bootstrap_servers),
        "PROFILES_KAFKA_INTERACTIONS_TOPIC": settings.kafka.interactions_topic,
        "PROFILES_KAFKA_GROUP_ID": settings.kafka.group_id,
        "PROFILES_KAFKA_SESSION_TIMEOUT_MS": str(settings.kafka.session_timeout_ms),
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.Popen(
        [sys.executable, "-m", "api.cli", "ingest"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


class Assignments:
    """Each ingest process's latest partitions, read from its "assigned {...}" log lines."""

    def __init__(self, worker: subprocess.Popen[bytes], processes: int) -> None:
        self.processes = processes
        self.latest: dict[str, set[int]] = {}
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, args=(worker,), daemon=True)
        self.reader.start()

    def _read(self, worker: subprocess.Popen[bytes]) -> None:
        assert worker.stderr is not None
        for line in worker.stderr:  # read to the end, or a full pipe would stall the worker
            found = _ASSIGNED.search(line.decode(errors="replace"))
            if found:
                with self.changed:
                    held = {int(p) for p in _PARTITION.findall(found["map"])}
                    self.latest[found["who"] or "ingest"] = held
                    self.changed.notify_all()

    def wait_settled(self, partitions: int, patience: float) -> None:
        """Until every process holds a disjoint share and together they hold them all."""
        deadline = time.monotonic() + patience
        with self.changed:
            while not self._settled(partitions):
                if not self.changed.wait(max(deadline - time.monotonic(), 0)):
                    raise RuntimeError(f"ingest processes never settled: {self.latest}")

    def _settled(self, partitions: int) -> bool:
        shares = [s for s in self.latest.values() if s]
        held = set().union(*shares) if shares else set()
        disjoint = sum(len(s) for s in shares) == len(held)
        return len(shares) == self.processes and disjoint and held == set(range(partitions))


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and stat_fields(int(entry.name))[1] == str(pid):
                found.append(int(entry.name))
        except OSError:
            continue  # ended meanwhile
    return found


def processes_cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) the processes have used so far; nan off Linux."""
    try:
        ticks = sum(int(f[11]) + int(f[12]) for f in map(stat_fields, pids))
    except OSError:
        return float("nan")
    return ticks / os.sysconf("SC_CLK_TCK")


def stat_fields(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
