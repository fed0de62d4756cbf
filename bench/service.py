"""The service under test in a process of its own, and the load generator in another."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from adapters.settings import Settings
from bench.loadgen import LoadConfig

ROOT = Path(__file__).resolve().parent.parent


def child_env(**extra: str) -> dict[str, str]:
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH", "")]))
    return {**os.environ, "PYTHONPATH": path, **extra}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class CpuSample:
    at: float
    service: float  # CPU seconds of the service process
    busy: float  # machine-wide busy jiffies
    total: float  # machine-wide jiffies


def cpu_sample(pid: int) -> CpuSample:
    """Where the cores went (Linux /proc; NaN elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        service = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        jiffies = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        nan = float("nan")
        return CpuSample(time.monotonic(), nan, nan, nan)
    idle = jiffies[3] + (jiffies[4] if len(jiffies) > 4 else 0)
    return CpuSample(time.monotonic(), service, sum(jiffies) - idle, sum(jiffies))


def cpu_usage(before: CpuSample, after: CpuSample) -> dict[str, float]:
    """Cores used between two samples: by the service, and by the whole machine."""
    seconds = after.at - before.at
    total = after.total - before.total
    return {
        "service_cores": (after.service - before.service) / seconds,
        "machine_busy_cores": (after.busy - before.busy) / total * (os.cpu_count() or 1)
        if total
        else float("nan"),
    }


class ServiceProcess:
    """`python -m bench.server PORT ROLE` against `settings`; stopped (SIGINT, then kill) on
    exit. `role` is all, commands, query or audit (api.app.create_app)."""

    def __init__(
        self, settings: Settings, *, start_timeout: float = 60.0, role: str = "commands"
    ) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = child_env(
            DATABASE_URL=str(settings.database_url),
            REDIS_URL=str(settings.redis_url),
            PROFILES_REDIS_NAMESPACE=settings.redis_namespace,
        )
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.server", str(self.port), role], cwd=ROOT, env=env
        )
        self._wait_ready(start_timeout)

    @property
    def pid(self) -> int:
        return self.process.pid

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the service exited with code {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"{self.base}/healthz", timeout=1) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the service did not answer /healthz within {timeout:.0f}s")

    def group_commit(self) -> dict[str, float]:
        """Transactions and units per transaction so far, from the service's /metrics."""
        with urllib.request.urlopen(f"{self.base}/metrics", timeout=5) as response:
            text = response.read().decode()
        found: dict[str, float] = {}
        for part in ("count", "sum"):
            match = re.search(rf"^profiles_group_commit_units_{part}\{{?.*?\}}? (\S+)$", text, re.M)
            found[part] = float(match.group(1)) if match else float("nan")
        transactions = found["count"]
        return {
            "transactions": transactions,
            "units_per_transaction": found["sum"] / transactions if transactions else 0.0,
        }

    def stop(self) -> None:
        stop(self.process, 5.0)

    def __enter__(self) -> ServiceProcess:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def run_load(config: LoadConfig) -> dict[str, Any]:
    """Runs the load generator in its own process and returns what it printed."""
    command = [sys.executable, "-m", "bench.loadgen", json.dumps(asdict(config))]
    timeout = config.warmup + config.duration + config.request_timeout + 60
    done = subprocess.run(
        command, cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed ({done.returncode}):\n{done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def stop(process: subprocess.Popen[Any], timeout: float = 10.0) -> None:
    """SIGINT, then kill after `timeout` seconds."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
