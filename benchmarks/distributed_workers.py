"""Benchmark a distributed search on this machine: a chief with one worker vs a chief with two workers.

Run: python benchmarks/distributed_workers.py --data-dir ../shared/data/kmnist [--space quick] [--rounds 1]

Each setup runs the same grid search (same space, seed and data) as separate
``python -m kmnist_search.run --role chief|worker`` processes talking gRPC over 127.0.0.1, into its
own run directory. The setups alternate round by round so machine noise hits both alike. Reported:
wall time from starting the chief to its exit, trials per worker, and the speed-up of two workers.
Writes benchmarks/records/distributed_workers.json and the BENCHMARKS.md section rendered from it.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from records import BENCHMARKS, ROOT, description, publish, write_record

from kmnist_search.data.rundir import RunDir

RECORD = ROOT / "benchmarks" / "records" / "distributed_workers.json"
DOCUMENT = BENCHMARKS
MARKER = "figures:distributed-workers"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_distributed(workers: int, space: str, data_dir: Path, project_dir: Path,
                    name: str) -> tuple[float, dict[str, int]]:
    """Run one distributed search; return its wall time and trials run per worker."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KERASTUNER_")}
    base = [sys.executable, "-m", "kmnist_search.run", "--strategy", "grid", "--space", space, "--data-dir",
            str(data_dir), "--project-dir", str(project_dir), "--name", name, "--no-export", "--quiet",
            "--oracle", f"127.0.0.1:{free_port()}"]
    started = time.monotonic()
    processes = [subprocess.Popen([*base, "--role", "chief"], env=env, stdout=subprocess.DEVNULL)]
    processes += [subprocess.Popen([*base, "--role", "worker", "--worker-id", f"worker-{index}"], env=env,
                                   stdout=subprocess.DEVNULL) for index in range(workers)]
    if any(process.wait() != 0 for process in processes):
        raise SystemExit(f"error: the {workers}-worker search failed")
    wall_s = time.monotonic() - started
    per_worker: dict[str, int] = {}
    for log in RunDir(project_dir / name).trial_logs():
        per_worker[str(log.tuner_id)] = per_worker.get(str(log.tuner_id), 0) + 1
    return wall_s, dict(sorted(per_worker.items()))


def render(record: dict[str, Any]) -> str:
    runs = record["runs"]
    lines = [f"`{record['command']}` ({record['date']}, {record['machine']}): the `{record['space']}` grid as a "
             "chief plus workers over 127.0.0.1, the setups in alternating order.", "",
             "| setup | wall time (chief start to exit) | trials per worker |", "|---|---|---|"]
    lines += [f"| chief + {run['workers']} worker{'s' if run['workers'] > 1 else ''} | {run['wall_s']:.1f} s | "
              + " + ".join(str(n) for n in run["trials_per_worker"].values()) + " |" for run in runs]
    one, two = (statistics.fmean(run["wall_s"] for run in runs if run["workers"] == n) for n in (1, 2))
    speed = f"Two workers on one {record['cores']}-core machine are **{one / two:.2f}x** as fast as one"
    if one / two >= 1.05:
        reading = ("a trial does not keep every core busy all the time (start-up, validation, bookkeeping), and the "
                   "second worker's training fills those gaps")
    elif one / two > 0.95:
        reading = "TensorFlow already spreads a trial over every core; distribution pays when each worker has a " \
                  "machine of its own"
    else:
        reading = "the two workers' trainings compete for the same cores"
    rounds = record["rounds"]
    lines += ["", f"{speed}: {reading} ({rounds} round{'s' if rounds > 1 else ''} of each on a shared host)."]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--space", default="quick")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--render-only", action="store_true", help="rewrite the BENCHMARKS.md section from the record")
    args = parser.parse_args()
    if not args.render_only:
        project_dir = Path(tempfile.mkdtemp(prefix="distributed-benchmark-"))
        runs = []
        for round_index in range(args.rounds):
            for workers in (1, 2) if round_index % 2 == 0 else (2, 1):
                wall_s, per_worker = run_distributed(workers, args.space, args.data_dir, project_dir,
                                                     f"workers{workers}-round{round_index}")
                runs.append({"round": round_index + 1, "workers": workers, "wall_s": round(wall_s, 1),
                             "trials_per_worker": per_worker})
                print(runs[-1], flush=True)
        command = f"python benchmarks/distributed_workers.py --data-dir D --space {args.space} --rounds {args.rounds}"
        figures = {"space": args.space, "rounds": args.rounds, "cores": os.cpu_count(), "runs": runs}
        write_record(RECORD, command, figures)
    publish(RECORD, DOCUMENT, MARKER, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
