"""Shared bits of the benchmarks: where results go, the previous build's figures, printing tables."""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

from testbed.console import make_console
from rich.table import Table

RESULTS = Path(__file__).resolve().parent / "results"
console = make_console(width=150)  # tables stay readable when piped to a file


def previous(name: str) -> dict | None:
    """The figures of the last run of this benchmark (the previous build), if any were written."""
    try:
        return json.loads((RESULTS / f"{name}.json").read_text())
    except (OSError, ValueError):
        return None


def write(name: str, data: dict, results: Path = RESULTS) -> Path:
    results.mkdir(parents=True, exist_ok=True)
    data = {"benchmark": name, "when": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.node(),
            "kernel": platform.release(), **data}
    path = results / f"{name}.json"
    path.write_text(json.dumps(data, indent=1) + "\n")
    return path


def table(title: str, columns: list[str], rows: list[list]) -> Table:
    t = Table(*columns, title=title)
    for r in rows:
        t.add_row(*("-" if v is None else (f"{v:.3g}" if isinstance(v, float) else str(v)) for v in r))
    return t


def ratio(a, b):
    return None if a is None or not b else a / b
