"""`profiles rebuild`: builds new versions of read models beside the serving ones, with progress."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from typing import Any, TextIO

from adapters.settings import Settings
from projections import profile, score, segments
from projections.rebuild import Progress

READ_MODELS = (profile.NAME, score.NAME, segments.NAME)
BAR_WIDTH = 30
LOG_EVERY_SECONDS = 5.0


def add_parser(sub: Any) -> None:
    rebuild = sub.add_parser(
        "rebuild",
        help="rebuild read models from the event store as a new version while the current one "
        "serves, then switch to it (a stopped rebuild resumes when run again)",
    )
    rebuild.add_argument("names", nargs="*", metavar="NAME", help=f"of {', '.join(READ_MODELS)}")
    rebuild.add_argument("--all", action="store_true", help="every read model, switched together")


class ProgressDisplay:
    """A bar redrawn in place on a terminal; a log line every few seconds elsewhere."""

    def __init__(self, out: TextIO, terminal: bool) -> None:
        self._out = out
        self._terminal = terminal
        self._last_line = 0.0
        self._phase = ""

    def __call__(self, p: Progress) -> None:
        building = p.phase == "building"
        now = time.monotonic()
        if not self._terminal and building and now - self._last_line < LOG_EVERY_SECONDS:
            return
        self._last_line = now
        what = ", ".join(f"{n} v{v}" for n, v in zip(p.names, p.versions, strict=True))
        eta = "-" if p.eta_seconds is None else _clock(p.eta_seconds)
        counts = f"{p.position:,}/{p.head:,} events  {p.rate:,.0f} events/s  ETA {eta}"
        if self._terminal and building:
            filled = round(p.fraction * BAR_WIDTH)
            bar = "#" * filled + "." * (BAR_WIDTH - filled)
            self._out.write(f"\r{what}  [{bar}] {p.fraction:4.0%}  {counts}\033[K")
        elif building:
            self._out.write(f"{what}: building {p.fraction:.0%} {counts}\n")
        elif p.phase != self._phase:
            end = "\n" if self._terminal and self._phase == "building" else ""
            self._out.write(f"{end}{what}: {p.phase} at position {p.position:,}\n")
        self._phase = p.phase
        self._out.flush()


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes // 60}:{minutes % 60:02d}:{secs:02d}"


def run(args: argparse.Namespace, settings: Settings) -> int:
    from api.bootstrap import build_rebuild

    if args.all and args.names:
        print("profiles rebuild: name read models or say --all, not both", file=sys.stderr)
        return 2
    names = list(READ_MODELS) if args.all else list(args.names)
    display = ProgressDisplay(sys.stdout, sys.stdout.isatty())
    try:
        rebuild, close = build_rebuild(settings, names, display)
    except LookupError as error:  # an unknown name, or none: the message lists the models
        print(f"profiles rebuild: {error} (or say --all)", file=sys.stderr)
        return 2
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        result = rebuild.run(stop)
    finally:
        close()
    if result is None:
        print("\nstopped; run the same command again to resume where it stopped", flush=True)
        return 130
    switched = ", ".join(
        f"{n} v{result.replaced.get(n, '?')} -> v{v}" for n, v in result.versions.items()
    )
    print(f"switched {switched}: {result.events:,} events in {result.seconds:.1f} s")
    return 0
