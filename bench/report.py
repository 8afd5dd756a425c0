"""What a benchmark hands back (``Result``), printed as Markdown tables and written as JSON."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness import REPO_ROOT

RESULTS_DIR = REPO_ROOT / ".run" / "bench"


@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join("---" for _ in self.columns) + "|")
        for row in self.rows:
            lines.append("| " + " | ".join(cell(value) for value in row) + " |")
        return "\n".join(lines)


@dataclass
class Result:
    """A benchmark's figures (``data``, the JSON) and the tables that show them."""

    name: str
    data: dict[str, Any]
    tables: list[Table]
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> str:
        parts = [table.markdown() for table in self.tables]
        parts += [f"- {note}" for note in self.notes]
        return "\n\n".join(parts)


def cell(value: Any) -> str:
    """A table cell: numbers rounded for reading (the JSON keeps them whole), None as "-"."""
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return str(value)


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile (``fraction`` 0.5, 0.99) of ``values``; None if empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def ratio(ours: float | None, theirs: float | None) -> float | None:
    if ours is None or not theirs:
        return None
    return ours / theirs


def output_path(name: str, output: Path | None) -> Path:
    return output if output is not None else RESULTS_DIR / f"{name}.json"


def read_result(name: str) -> dict[str, Any] | None:
    """A benchmark's last JSON in the default place, if there is one."""
    path = output_path(name, None)
    return json.loads(path.read_text()) if path.exists() else None


def publish(result: Result, output: Path | None) -> Path:
    """Print the tables and write the JSON; returns where it was written."""
    path = output_path(result.name, output)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result.data, indent=2, sort_keys=True) + "\n")
    print(f"## {result.name}\n\n{result.markdown()}\n\n(JSON: {path})\n", flush=True)
    return path
