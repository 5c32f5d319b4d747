"""How long the test suite takes: the quick selection and the whole suite, as the README runs them.

Run: python benchmarks/suite_time.py [--data-dir ../shared/data/kmnist] [--quick-only]

Runs ``python -m pytest -q -n auto -m "not slow"`` and then ``python -m pytest -q -n auto`` (the README's
command) in fresh processes, one after the other, and records each one's wall seconds, CPU seconds (all
its processes) and test counts. ``--data-dir`` points the real-data tests at the official files, as CI
does. Writes benchmarks/records/suite_time.json and the BENCHMARKS.md section rendered from it.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from records import BENCHMARKS, ROOT, description, publish, write_record

RECORD = ROOT / "benchmarks" / "records" / "suite_time.json"
DOCUMENT = BENCHMARKS
MARKER = "figures:test-suite"
SELECTIONS = {"quick": ["-m", "not slow"], "whole": []}


def run(arguments: list[str], data_dir: Path | None) -> dict[str, Any]:
    """One pytest run: its command, wall and CPU seconds, and the counts of its summary line."""
    environment = {**os.environ, **({"KMNIST_REAL_DATA_DIR": str(data_dir.resolve())} if data_dir else {})}
    command = [sys.executable, "-m", "pytest", "-q", "-n", "auto", "-p", "no:cacheprovider", *arguments]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    finished = subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = finished.stdout.strip().splitlines()[-1] if finished.stdout.strip() else ""
    counts = {kind: int(number) for number, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary)}
    if finished.returncode != 0:
        raise SystemExit(f"error: the tests failed ({summary}): run them and fix them first")
    shown = " ".join(f'"{a}"' if " " in a else a for a in ["python", "-m", "pytest", "-q", "-n", "auto", *arguments])
    return {"command": shown, "wall_s": round(wall, 1),
            "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1), **counts}


def render(record: dict[str, Any]) -> str:
    lines = [f"`{record['command']}` ({record['date']}, {record['machine']}; "
             + ("the official files for the real-data tests" if record["real_data"] else "no real data: those "
                "tests skip") + ", nothing else running):", "",
             "| selection | command | tests passed | skipped | wall | CPU |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {name} | `{run['command']}` | {run.get('passed', 0)} | {run.get('skipped', 0)} | "
              f"{run['wall_s'] / 60:.1f} min | {run['cpu_s'] / 60:.1f} min |" for name, run in record["runs"].items()]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--data-dir", type=Path, help="the official KMNIST files, for the real-data tests")
    parser.add_argument("--quick-only", action="store_true", help="time the quick selection alone")
    parser.add_argument("--render-only", action="store_true", help="rewrite the BENCHMARKS.md section from the record")
    args = parser.parse_args()
    if not args.render_only:
        selections = ["quick"] if args.quick_only else list(SELECTIONS)
        runs = {name: run(SELECTIONS[name], args.data_dir) for name in selections}
        command = "python benchmarks/suite_time.py" + (" --data-dir D" if args.data_dir else "") + (
            " --quick-only" if args.quick_only else "")
        write_record(RECORD, command, {"real_data": args.data_dir is not None, "runs": runs})
    publish(RECORD, DOCUMENT, MARKER, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
