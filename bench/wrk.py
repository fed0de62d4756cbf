"""Closed-loop HTTP load with wrk (`apt-get install wrk`): a Lua script, a run, its figures.

The script picks one of the given requests at random for each send (each wrk thread seeded
apart) and counts answers that are not HTTP 200 or whose body holds one of the `bad`
substrings (GraphQL errors, a null profile); `done` prints that count, which wrk's own
summary cannot know.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

UNITS = {"us": 0.001, "ms": 1.0, "s": 1_000.0, "m": 60_000.0, "h": 3_600_000.0}
INSTALL = "wrk is not installed: apt-get install wrk (Debian/Ubuntu package `wrk`)"


class WrkMissing(RuntimeError):
    pass


def lua_string(text: str) -> str:
    """A Lua long-bracket literal of `text` (a level its text does not close)."""
    level = 0
    while f"]{'=' * level}]" in text:
        level += 1
    eq = "=" * level
    return f"[{eq}[{text}]{eq}]"


def lua_script(requests: Sequence[tuple[str, str, str | None]], bad: Sequence[str]) -> str:
    entries = ",\n".join(
        "{"
        + lua_string(method)
        + ", "
        + lua_string(path)
        + ", "
        + ("nil" if body is None else lua_string(body))
        + "}"
        for method, path, body in requests
    )
    checks = " or ".join(f"string.find(body, {lua_string(b)}, 1, true)" for b in bad) or "false"
    return f"""
local requests = {{
{entries}
}}
local json = {{["Content-Type"] = "application/json"}}
local counter = 0
local threads = {{}}

function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() + 7919 * tid)
  bad = 0
  sample = ""
end

function request()
  local r = requests[math.random(#requests)]
  if r[3] == nil then
    return wrk.format(r[1], r[2])
  end
  return wrk.format(r[1], r[2], json, r[3])
end

function response(status, headers, body)
  if status ~= 200 or {checks} then
    bad = bad + 1
    if sample == "" then
      sample = status .. " " .. string.sub(body or "", 1, 300)
    end
  end
end

function done(summary, latency, requests)
  local total = 0
  local example = ""
  for _, thread in ipairs(threads) do
    total = total + thread:get("bad")
    local s = thread:get("sample")
    if example == "" and s ~= nil then
      example = s
    end
  end
  io.write("BENCH_BAD " .. total .. "\\n")
  io.write("BENCH_SAMPLE " .. (string.gsub(example, "\\n", " ")) .. "\\n")
end
"""


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)([a-z]+)", text)
    if not match or match.group(2) not in UNITS:
        return float("nan")
    return float(match.group(1)) * UNITS[match.group(2)]


def parse(output: str) -> dict[str, Any]:
    """Requests/sec, the latency distribution (ms), errors, from wrk --latency's output."""
    found: dict[str, Any] = {}
    rate = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    found["requests_per_second"] = float(rate.group(1)) if rate else float("nan")
    for pct in ("50", "75", "90", "99"):
        match = re.search(rf"^\s+{pct}%\s+(\S+)", output, re.M)
        found[f"p{pct}_ms"] = _ms(match.group(1)) if match else float("nan")
    total = re.search(r"^\s+(\d+) requests in ([\d.]+\w+)", output, re.M)
    found["requests"] = int(total.group(1)) if total else 0
    sockets = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    found["socket_errors"] = sum(int(g) for g in sockets.groups()) if sockets else 0
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    found["non_2xx"] = int(non2xx.group(1)) if non2xx else 0
    bad = re.search(r"^BENCH_BAD (\d+)", output, re.M)
    found["bad_answers"] = int(bad.group(1)) if bad else 0
    sample = re.search(r"^BENCH_SAMPLE (.*)$", output, re.M)
    found["bad_example"] = sample.group(1) if sample else ""
    found["errors"] = found["socket_errors"] + found["bad_answers"]
    return found


def run_wrk(
    url: str, script: Path, seconds: float, *, threads: int = 2, connections: int = 8
) -> dict[str, Any]:
    """`wrk -tT -cC -dSs --latency -s SCRIPT URL`, parsed (WrkMissing without wrk)."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise WrkMissing(INSTALL)
    threads = min(threads, connections)  # wrk refuses fewer connections than threads
    command = [wrk, f"-t{threads}", f"-c{connections}", f"-d{seconds:.0f}s", "--latency",
               "-s", str(script), url]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}):\n{done.stderr}\n{done.stdout}")
    return {**parse(done.stdout), "threads": threads, "connections": connections,
            "seconds": seconds}  # fmt: skip
