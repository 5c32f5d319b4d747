"""How long the test suite takes: the quick selection and the whole suite, as the README runs them.

Run: python benchmarks/suite_time.py [--data-dir ../shared/data/kmnist] [--quick-only] [--against REV]

Runs ``python -m pytest -q -n auto -m "not slow"`` and then ``python -m pytest -q -n auto`` (the README's
command) in fresh processes, one after the other, and records each one's wall seconds, CPU seconds (all
its processes) and test counts. ``--data-dir`` points the real-data tests at the official files, as CI
does. ``--against REV`` then runs the whole suite of an earlier commit the same way, from a temporary git
worktree, right after this one's: the host's speed swings by up to 2x within an hour, so a time is only
comparable with another taken beside it. Writes benchmarks/records/suite_time.json and the BENCHMARKS.md
section rendered from it.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from records import BENCHMARKS, ROOT, description, publish, write_record

RECORD = ROOT / "benchmarks" / "records" / "suite_time.json"
DOCUMENT = BENCHMARKS
MARKER = "figures:test-suite"
SELECTIONS = {"quick": ["-m", "not slow"], "whole": []}


def run(arguments: list[str], data_dir: Path | None, checkout: Path = ROOT,
        must_pass: bool = True) -> dict[str, Any]:
    """One pytest run of ``checkout``'s tests on its own package: its command, wall and CPU seconds, and the
    counts of its summary line."""
    environment = {**os.environ, **({"KMNIST_REAL_DATA_DIR": str(data_dir.resolve())} if data_dir else {}),
                   **({"PYTHONPATH": str(checkout)} if checkout != ROOT else {})}
    command = [sys.executable, "-m", "pytest", "-q", "-n", "auto", "-p", "no:cacheprovider", *arguments]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    finished = subprocess.run(command, cwd=checkout, env=environment, capture_output=True, text=True)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    summary = finished.stdout.strip().splitlines()[-1] if finished.stdout.strip() else ""
    counts = {kind: int(number) for number, kind in re.findall(r"(\d+) (passed|failed|skipped|errors?)", summary)}
    if finished.returncode != 0 and (must_pass or "passed" not in counts):
        raise SystemExit(f"error: the tests failed ({summary}): run them and fix them first")
    shown = " ".join(f'"{a}"' if " " in a else a for a in ["python", "-m", "pytest", "-q", "-n", "auto", *arguments])
    return {"command": shown, "wall_s": round(wall, 1),
            "cpu_s": round(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime, 1), **counts}


def run_commit(revision: str, data_dir: Path | None) -> dict[str, Any]:
    """The whole suite of an earlier commit, from a temporary worktree, on that commit's package; a test of
    it failing is counted, not fatal (its time is still a time)."""
    commit = subprocess.run(["git", "rev-parse", "--short", f"{revision}^{{commit}}"], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory() as folder:
        checkout = Path(folder) / "checkout"
        subprocess.run(["git", "worktree", "add", "--detach", "-q", str(checkout), commit], cwd=ROOT, check=True)
        try:
            return {"commit": commit, **run(SELECTIONS["whole"], data_dir, checkout, must_pass=False)}
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(checkout)], cwd=ROOT, check=True)


def render(record: dict[str, Any]) -> str:
    lines = [f"`{record['command']}` ({record['date']}, {record['machine']}; "
             + ("the official files for the real-data tests" if record["real_data"] else "no real data: those "
                "tests skip") + ", nothing else running):", "",
             "| selection | command | tests passed | skipped | wall | CPU |", "|---|---|---:|---:|---:|---:|"]
    lines += [f"| {name} | `{run['command']}` | {run.get('passed', 0)} | {run.get('skipped', 0)} | "
              f"{run['wall_s'] / 60:.1f} min | {run['cpu_s'] / 60:.1f} min |" for name, run in record["runs"].items()]
    earlier = record.get("against")
    if earlier:
        now = record["runs"]["whole"]
        failed = f", {earlier['failed']} failed" if earlier.get("failed") else ""
        lines += ["", f"Right after it, the whole suite of commit `{earlier['commit']}` ({earlier.get('passed', 0)} "
                  f"tests passed{failed}) took {earlier['wall_s'] / 60:.1f} min wall and {earlier['cpu_s'] / 60:.1f} "
                  f"CPU min on the same host: this suite took {now['wall_s'] / earlier['wall_s']:.2f}x its wall time "
                  f"and {now['cpu_s'] / earlier['cpu_s']:.2f}x its CPU time."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--data-dir", type=Path, help="the official KMNIST files, for the real-data tests")
    parser.add_argument("--quick-only", action="store_true", help="time the quick selection alone")
    parser.add_argument("--against", metavar="REV", help="then time the whole suite of this earlier commit beside it")
    parser.add_argument("--render-only", action="store_true", help="rewrite the BENCHMARKS.md section from the record")
    args = parser.parse_args()
    if not args.render_only:
        selections = ["quick"] if args.quick_only else list(SELECTIONS)
        runs = {name: run(SELECTIONS[name], args.data_dir) for name in selections}
        against = run_commit(args.against, args.data_dir) if args.against and "whole" in runs else None
        command = "python benchmarks/suite_time.py" + (" --data-dir D" if args.data_dir else "") + (
            " --quick-only" if args.quick_only else "") + (f" --against {args.against}" if against else "")
        write_record(RECORD, command, {"real_data": args.data_dir is not None, "runs": runs,
                                       **({"against": against} if against else {})})
    publish(RECORD, DOCUMENT, MARKER, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
