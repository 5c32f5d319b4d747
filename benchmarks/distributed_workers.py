"""Benchmark a distributed search on this machine: a chief with one worker vs a chief with two workers.

Run: python benchmarks/distributed_workers.py --data-dir ../shared/data/kmnist [--space quick] [--rounds 1]

Each setup runs the same grid search (same space, seed and data) as separate
``python -m kmnist_search.run --role chief|worker`` processes talking gRPC over 127.0.0.1, into its
own run directory. The setups alternate round by round so machine noise hits both alike. Reported:
wall time from starting the chief to its exit, trials per worker, and the speed-up of two workers.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from records import description


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_distributed(workers: int, space: str, data_dir: Path, project_dir: Path, name: str) -> tuple[float, dict]:
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
    for log in (project_dir / name).glob("trial_*/trial_log.json"):
        worker = json.loads(log.read_text())["tuner_id"]
        per_worker[worker] = per_worker.get(worker, 0) + 1
    return wall_s, per_worker


def main() -> None:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--space", default="quick")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    project_dir = Path(tempfile.mkdtemp(prefix="distributed-benchmark-"))
    print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.machine()}, {os.cpu_count()} cores; "
          f"space {args.space}; runs in {project_dir}", flush=True)
    walls: dict[int, list[float]] = {1: [], 2: []}
    for round_index in range(args.rounds):
        for workers in (1, 2) if round_index % 2 == 0 else (2, 1):
            wall_s, per_worker = run_distributed(workers, args.space, args.data_dir, project_dir,
                                                 f"workers{workers}-round{round_index}")
            walls[workers].append(wall_s)
            print(f"chief + {workers} worker(s): {wall_s:.1f} s, trials per worker {per_worker}", flush=True)
    one, two = (sum(walls[n]) / len(walls[n]) for n in (1, 2))
    print(f"mean wall time: 1 worker {one:.1f} s, 2 workers {two:.1f} s; two workers are {one / two:.2f}x as fast")


if __name__ == "__main__":
    main()
