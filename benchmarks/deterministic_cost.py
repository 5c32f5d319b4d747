"""What --deterministic costs, and whether the same seed trains the same weights without it.

Run: python benchmarks/deterministic_cost.py --data-dir ../shared/data/kmnist [--rounds 2]

Trains one configuration of the quick space (learning rate 1.0, batch 128, cross-entropy, 10,000
training images, 2 epochs) with the same seeds, alternately with and without TensorFlow's op
determinism, each training in a fresh process, ``--rounds`` times each. Reports the CPU seconds per
epoch of each mode (median; CPU seconds, so that a busy host slows both alike), their ratio, and
whether repeated trainings of one mode gave identical validation curves (and the largest difference
if not). Writes benchmarks/records/deterministic.json and the BENCHMARKS.md section rendered from it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from records import BENCHMARKS, ROOT, description, publish, write_record

RECORD = ROOT / "benchmarks" / "records" / "deterministic.json"
DOCUMENT = BENCHMARKS
MARKER = "figures:deterministic"
TRAIN = """
import json, sys
from kmnist_search import pipeline
space = {"name": "determinism", "hyperparameters": {"learning_rate": [1.0], "batch_size": [128],
         "loss": ["categorical_crossentropy"]}, "training": {"epochs": 2, "validation_images": 6000,
         "train_images": 10000}, "pruning": {"strategy": "none"}}
result = pipeline.search(space, "grid", data_dir=sys.argv[1], project_dir=sys.argv[2], name="unit",
                         deterministic=sys.argv[3] == "on")
print(json.dumps([epoch.model_dump() for epoch in result.trials[0].history]))
"""


def train(data_dir: Path, deterministic: bool) -> list[dict[str, float]]:
    with tempfile.TemporaryDirectory() as project:
        output = subprocess.run([sys.executable, "-c", TRAIN, str(data_dir), project, "on" if deterministic else "off"],
                                capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def summarise(histories: list[list[dict[str, float]]]) -> dict[str, Any]:
    curves = [[epoch["val_accuracy"] for epoch in history] for history in histories]
    largest = max(abs(a - b) for curve in curves[1:] for a, b in zip(curve, curves[0], strict=True))
    return {"cpu_seconds_per_epoch": round(statistics.median(e["cpu_seconds"] for h in histories for e in h), 2),
            "identical_curves": largest == 0.0, "largest_val_accuracy_difference": largest,
            "val_accuracy": curves[0][-1]}


def render(record: dict[str, Any]) -> str:
    on, off = record["deterministic"], record["default"]
    def same(mode: dict[str, Any]) -> str:
        return ("identical validation curves" if mode["identical_curves"] else
                f"curves differing by up to {mode['largest_val_accuracy_difference'] * 100:.2f} points")
    return (f"`{record['command']}` ({record['date']}, {record['machine']}; {record['rounds']} trainings of each, "
            f"alternating, each in a fresh process): with `--deterministic` {on['cpu_seconds_per_epoch']:.2f} CPU "
            f"seconds per epoch against {off['cpu_seconds_per_epoch']:.2f} without "
            f"({on['cpu_seconds_per_epoch'] / off['cpu_seconds_per_epoch']:.2f}x); same seeds gave {same(on)} with "
            f"it and {same(off)} without.")


def main() -> int:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--render-only", action="store_true", help="rewrite the BENCHMARKS.md section from the record")
    args = parser.parse_args()
    if not args.render_only:
        runs: dict[bool, list[list[dict[str, float]]]] = {True: [], False: []}
        for _ in range(args.rounds):
            for deterministic in (True, False):
                runs[deterministic].append(train(args.data_dir.resolve(), deterministic))
        RECORD.parent.mkdir(exist_ok=True)
        write_record(RECORD, f"python benchmarks/deterministic_cost.py --rounds {args.rounds}",
                     {"rounds": args.rounds, "deterministic": summarise(runs[True]), "default": summarise(runs[False])})
    publish(RECORD, DOCUMENT, MARKER, render)
    return 0


if __name__ == "__main__":
    sys.exit(main())
