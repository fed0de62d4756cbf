#!/usr/bin/env python3
"""Developer entry points, standard library only, so they run before any dependency exists.

    python3 tasks.py dev [args...]     run the service on embedded servers (`profiles dev`)
    python3 tasks.py test [args...]    ruff, ruff format, import contracts, mypy, then pytest
    python3 tasks.py bench [args...]   the benchmark, python -m bench [--quick] [--only NAME]

Each first makes `.venv` (if missing) and installs the project into it with its dev extras
whenever pyproject.toml differs from the one last installed.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
STAMP = VENV / ".installed-pyproject"
PYTEST_NO_TESTS = 5

USAGE = __doc__.split("\n\n")[1] if __doc__ else ""


def header(text: str) -> None:
    print(f"==> {text}", flush=True)


def tool(name: str) -> str:
    return str(BIN / (f"{name}.exe" if os.name == "nt" else name))


def ensure_venv() -> None:
    if not Path(tool("python")).exists():
        header(f"creating {VENV.name}")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    installed = STAMP.read_text().strip() if STAMP.exists() else ""
    if installed != digest:
        header("pip install -e '.[dev]' (pyproject.toml changed since the last install)")
        # The pip that Python 3.11's venv bundles already does PEP 660 editable installs.
        pip = [tool("python"), "-m", "pip", "--disable-pip-version-check"]
        subprocess.run([*pip, "install", "-e", ".[dev]"], check=True, cwd=ROOT)
        # Written only after success, so a failed install is retried next time.
        STAMP.write_text(digest + "\n")


def dev(args: list[str]) -> int:
    command = [tool("profiles"), "dev", *args]
    header(" ".join(["profiles", "dev", *args]))
    if os.name == "posix":
        # Replace this process: Ctrl-C then reaches the service alone, which stops its embedded
        # servers cleanly (subprocess.run would kill it 0.25 s after the interrupt).
        os.execve(command[0], command, venv_env())
    return subprocess.call(command, cwd=ROOT, env=venv_env())


def venv_env() -> dict[str, str]:
    # As if the venv were activated, for anything the steps start by name.
    path = os.pathsep.join([str(BIN), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "VIRTUAL_ENV": str(VENV)}


def test(args: list[str]) -> int:
    steps = [
        ("ruff check .", [tool("ruff"), "check", "."]),
        ("ruff format --check .", [tool("ruff"), "format", "--check", "."]),
        ("lint-imports", [tool("lint-imports")]),
        ("mypy", [tool("mypy")]),
        (" ".join(["pytest", *args]), [tool("pytest"), *args]),
    ]
    for label, command in steps:
        header(label)
        code = subprocess.call(command, cwd=ROOT, env=venv_env())
        if code == PYTEST_NO_TESTS and command[0] == tool("pytest"):
            # Collecting nothing means a broken path or filter, never a pass.
            print("pytest collected no tests", file=sys.stderr)
        if code != 0:
            return code
    return 0


def bench(args: list[str]) -> int:
    # Starts its own embedded Postgres and Valkey unless DATABASE_URL / REDIS_URL are set.
    header(" ".join(["python -m bench", *args]))
    return subprocess.call([tool("python"), "-m", "bench", *args], cwd=ROOT, env=venv_env())


def main(argv: list[str]) -> int:
    commands = {"dev": dev, "test": test, "bench": bench}
    if not argv or argv[0] not in commands:
        asked = argv[:1] in (["-h"], ["--help"], ["help"])
        print(f"usage:\n{USAGE}", file=sys.stdout if asked else sys.stderr)
        return 0 if asked else 2
    # Checked at run time: whatever `python3` is on PATH runs this file and makes the venv.
    if sys.version_info < (3, 11):  # noqa: UP036
        print("Python 3.11 or newer is needed (the venv is made with this one)", file=sys.stderr)
        return 2
    try:
        ensure_venv()
        return commands[argv[0]](argv[1:])
    except subprocess.CalledProcessError as error:
        return error.returncode or 1
    except FileNotFoundError as error:
        # A tool missing from .venv: say which, rather than a traceback.
        print(f"not found: {error.filename}; delete {STAMP} to reinstall", file=sys.stderr)
        return 127


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except KeyboardInterrupt:
        sys.exit(130)
