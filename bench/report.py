"""The result table: each figure beside a limit from the same run, the ratio, the target."""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from bench.common import RESULTS


@dataclass(frozen=True)
class Target:
    on: Literal["value", "ratio"]
    op: Literal[">=", "<="]
    threshold: float
    text: str  # as shown, e.g. ">= 1,500/s"

    def met(self, value: float, ratio: float | None) -> bool:
        subject = value if self.on == "value" else ratio
        if subject is None or math.isnan(subject):
            return False
        compare = operator.ge if self.op == ">=" else operator.le
        return bool(compare(subject, self.threshold))


@dataclass
class Row:
    scenario: str
    figure: str
    value: float
    unit: str  # "/s", "ms", "" (a count)
    limit: str = ""
    limit_value: float | None = None
    targets: Sequence[Target] = field(default_factory=tuple)
    shown: str | None = None  # instead of the number, e.g. "HUNG"

    @property
    def ratio(self) -> float | None:
        if self.limit_value is None or self.limit_value == 0:
            return None
        return self.value / self.limit_value

    @property
    def verdict(self) -> str:
        if not self.targets:
            return ""
        missed = [t.text for t in self.targets if not t.met(self.value, self.ratio)]
        return "MISSES target" if missed else "meets"

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(ratio=self.ratio, verdict=self.verdict)
        return data


def number(value: float | None, unit: str) -> str:
    if value is None:
        return ""
    if math.isnan(value):
        return "n/a"
    if unit == "ms":
        return f"{value:,.2f} ms" if value < 100 else f"{value:,.0f} ms"
    if unit == "/s":
        return f"{value:,.0f}/s"
    return f"{value:,.0f}{unit}"


def _ratio(ratio: float | None) -> str:
    if ratio is None:
        return ""
    return "n/a" if math.isnan(ratio) else f"{ratio:.2f}"


def table(rows: Sequence[Row]) -> str:
    header = ("scenario", "figure", "value", "limit (same run)", "limit", "ratio", "target", "")
    lines = [
        (
            r.scenario,
            r.figure,
            r.shown or number(r.value, r.unit),
            r.limit,
            number(r.limit_value, r.unit),
            _ratio(r.ratio),
            "; ".join(t.text for t in r.targets),
            r.verdict,
        )
        for r in rows
    ]
    widths = [max(len(str(c)) for c in column) for column in zip(header, *lines, strict=True)]
    right = {2, 4, 5}  # numbers

    def render(cells: Sequence[str]) -> str:
        out = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(out).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([render(header), rule, *(render(line) for line in lines)])


def _plain(value: Any) -> Any:
    """NaN and infinities as null: strict JSON has no spelling for them."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def write_json(stamp: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{stamp}.json"
    text = json.dumps(_plain(payload), indent=2, default=str, allow_nan=False)
    path.write_text(text + "\n")
    return path
