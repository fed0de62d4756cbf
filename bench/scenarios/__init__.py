"""One module per scenario; each returns rows for the table and details for the JSON."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bench.report import Row


@dataclass
class Outcome:
    rows: list[Row] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # broken promises, not missed targets
