"""Benchmark median pruning on a reduced report grid: the same 40-configuration search with and without it.

Run: python benchmarks/pruning_reduced_grid.py --data-dir ../shared/data/kmnist [--space report-small]

Both searches run side by side, at the same time, as two ``python -m kmnist_search.run`` processes
(grid strategy, same seed, same data), so machine noise hits both alike. Reported per search: wall
time, the sum of the trials' own wall times, epochs trained, how many trials were pruned, and the top
configuration with its validation accuracy.

Cost is the pruned search priced at what the same configuration took in the unpruned search (its
mean epoch seconds times the epochs the pruned trial ran, plus that trial's fixed cost): both runs share the machine, so
their wall times also measure who got the CPU when; the priced figure does not. The pruned search
passes if it costs at most 0.4x the unpruned one and picks the same top configuration.
``--report-only`` re-reads two finished runs in ``--project-dir`` without training.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from records import description

from kmnist_search.data.record import RunRecord
from kmnist_search.data.rundir import RunDir

MAX_COST_RATIO = 0.4


def start_search(prune: str, space: str, data_dir: Path, project_dir: Path) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "kmnist_search.run", "--strategy", "grid", "--space", space,
               "--prune", prune, "--name", f"prune-{prune}", "--project-dir", str(project_dir),
               "--data-dir", str(data_dir), "--no-export", "--quiet"]
    log = (project_dir / f"prune-{prune}.log").open("wb")
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)


def trial_costs(run_dir: Path) -> dict[str, tuple[list[float], float]]:
    """Configuration (JSON) -> (seconds of each epoch its trial ran, the trial's whole wall time)."""
    return {json.dumps(trial.hyperparameters, sort_keys=True):
            ([epoch.seconds or 0.0 for epoch in trial.history], trial.wall_time_s or 0.0)
            for trial in RunDir(run_dir).trials()}


def priced_cost_ratio(unpruned_dir: Path, pruned_dir: Path) -> float:
    """The pruned search priced at the unpruned search's seconds: each configuration's epochs at its
    mean epoch time there, plus that trial's fixed cost there (building, evaluating, saving)."""
    unpruned, pruned = trial_costs(unpruned_dir), trial_costs(pruned_dir)
    priced = 0.0
    for config, (epochs, _) in pruned.items():
        reference_epochs, reference_wall = unpruned[config]
        per_epoch = sum(reference_epochs) / len(reference_epochs)
        priced += len(epochs) * per_epoch + (reference_wall - sum(reference_epochs))
    return priced / sum(wall for _, wall in unpruned.values())


def describe(results: RunRecord, wall_s: float) -> dict[str, Any]:
    trials = results.trials
    return {
        "wall_s": round(wall_s, 1),
        "trial_seconds": round(sum(t.wall_time_s or 0.0 for t in trials), 1),
        "epochs_trained": sum(t.epochs_run for t in trials),
        "trials": len(trials),
        "pruned": sum(t.status == "PRUNED" for t in trials),
        "top": results.winner.hyperparameters,
        "top_val_accuracy": results.winner.val_accuracy,
        "top_test_accuracy": results.winner.test_accuracy,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--space", default="report-small")
    parser.add_argument("--project-dir", type=Path, help="keep the two runs here (default: a temporary folder)")
    parser.add_argument("--report-only", action="store_true", help="only report two finished runs in --project-dir")
    args = parser.parse_args()
    project_dir = args.project_dir or Path(tempfile.mkdtemp(prefix="pruning-benchmark-"))
    project_dir.mkdir(parents=True, exist_ok=True)
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.machine()}, {os.cpu_count()} cores; "
          f"space {args.space}; runs in {project_dir}", flush=True)

    started = time.monotonic()
    processes = {} if args.report_only else \
        {prune: start_search(prune, args.space, args.data_dir, project_dir) for prune in ("none", "median")}
    wall: dict[str, float] = {}
    while len(wall) < len(processes):
        for prune, process in processes.items():
            if prune not in wall and process.poll() is not None:
                wall[prune] = time.monotonic() - started
                if process.returncode != 0:
                    print(f"error: the {prune} search failed: see {project_dir / f'prune-{prune}.log'}")
                    return 1
        time.sleep(1)

    figures = {prune: describe(RunDir(project_dir / f"prune-{prune}").require_results(), wall.get(prune, float("nan")))
               for prune in ("none", "median")}
    for prune, figure in figures.items():
        print(f"prune {prune:>6}: {json.dumps(figure)}")
    unpruned, pruned = figures["none"], figures["median"]
    ratios = {key: pruned[key] / unpruned[key] for key in ("wall_s", "trial_seconds", "epochs_trained")}
    ratios["priced_cost"] = priced_cost_ratio(project_dir / "prune-none", project_dir / "prune-median")
    same_top = pruned["top"] == unpruned["top"]
    print("pruned / unpruned: " + ", ".join(f"{key} {ratio:.2f}x" for key, ratio in ratios.items()))
    print(f"same top configuration: {'yes' if same_top else 'no'}")
    passed = same_top and ratios["priced_cost"] <= MAX_COST_RATIO
    print(f"{'PASS' if passed else 'FAIL'}: priced cost ratio <= {MAX_COST_RATIO} and the same top configuration")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
