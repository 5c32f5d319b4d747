"""Benchmark records and the document sections rendered from them: one source for every figure.

A benchmark writes its figures to a JSON record (with the command, machine and date) and renders
them into the documents between ``<!-- NAME:start -->`` and ``<!-- NAME:end -->``. The test suite
renders every section again from its record and fails when a document says anything else, so a
quoted figure cannot drift from the record it came from.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "BENCHMARKS.md"


def description(docstring: str | None) -> str:
    """A benchmark's ``--help`` description: its docstring's first paragraph, on one line."""
    return " ".join((docstring or "").split("\n\n")[0].split())


def machine() -> str:
    """The machine a figure was measured on: architecture, CPU model and its int8 instruction set (int8
    results and speeds depend on them), cores and Python."""
    from kmnist_search.export.latency import cpu

    return f"{platform.machine()} {cpu()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def write_record(path: Path, command: str, figures: dict[str, Any]) -> dict[str, Any]:
    """Write a record of ``figures`` measured by ``command`` here and now; return it."""
    record = {"command": command, "machine": machine(), "date": datetime.now(timezone.utc).date().isoformat(),
              **figures}
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return record


def read_record(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a JSON object")
    return data


def _parts(document: Path, marker: str) -> tuple[str, str, str, str, str]:
    """A document split at its ``marker`` lines: before, the start line, inside, the end line, after."""
    content = document.read_text(encoding="utf-8")
    start, end = f"<!-- {marker}:start -->\n", f"<!-- {marker}:end -->"
    if start not in content or end not in content.split(start, 1)[1]:
        raise ValueError(f"{document} has no {start.strip()} ... {end} section")
    before, rest = content.split(start, 1)
    inside, after = rest.split(end, 1)
    return before, start, inside, end, after


def section(document: Path, marker: str) -> str:
    """What a document holds between its ``marker`` lines ("" when they are adjacent)."""
    return _parts(document, marker)[2].removesuffix("\n")


def write_into(document: Path, marker: str, text: str) -> None:
    """Replace what a document holds between its ``marker`` lines with ``text``."""
    before, start, _, end, after = _parts(document, marker)
    document.write_text(f"{before}{start}{text}\n{end}{after}", encoding="utf-8")


def show(document: Path, marker: str, text: str) -> None:
    """Write ``text`` into the document's section, and print it."""
    write_into(document, marker, text)
    print(text)


def publish(record: Path, document: Path, marker: str, render: Callable[[dict[str, Any]], str]) -> None:
    """Render a record into its document's section, and print what was written."""
    show(document, marker, render(read_record(record)))
