"""Train the study's grids to the end, unpruned, and publish every epoch as CSV: the ground truth that
pruners and strategies are replayed against.

Run: python benchmarks/ground_truth.py --data-dir ../shared/data/kmnist

One resumable command. It works through these stages in order, one 12-epoch training (a *unit*: one
configuration at one seed) at a time, each unit a one-configuration run of the real search code
(``pipeline.search`` with pruning off):

1. ``report-small``: all 40 configurations at 5 seeds;
2. ``report-small``: all 40 at the first seed again (run-to-run noise at one seed);
3. ``report``: all 40 configurations at the first seed;
4. ``report``: the 5 best of stage 3 (by final validation accuracy) at 2 more seeds, best first;
5. ``report``: the other 35 at the second seed, in the order of stage 3 (best first): so the replay can
   average over two seeds' curves, not rank by one seed's;
6. ``report-10k`` (``benchmarks/ground_truth/report-10k.toml``): the same grid on a 10,000-image subset at
   a seed no other stage uses: a held-out workload, on which no pruning rule was chosen;
7. ``report``: the other 35 at the third seed, as in stage 5.

The split always uses seed 42. A unit of configuration ``i`` (in the space's grid order) at seed ``s``
trains with weights and batch-order seed ``s + i``: what trial ``i`` of ``run --strategy grid --seed 42
--init-seed s`` trains. After every unit, ``benchmarks/ground_truth/SPACE.csv`` (one row per epoch)
and ``units.csv`` (one row per unit) are rewritten atomically, so a kill loses at most the unit in
progress, which resumes from its last epoch when the command is run again. Units already in the CSV
are never trained again, even when their run folders are gone.
"""

from __future__ import annotations

import argparse
import csv
import gc
import io
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from records import ROOT, description, machine

OUT_DIR = ROOT / "benchmarks" / "ground_truth"
SPLIT_SEED = 42
SEEDS = (42, 1042, 2042, 3042, 4042)  # replicate seeds; a unit adds its configuration's grid index
TOP_CONFIGURATIONS = 5
REPORT_REPLICATE_SEEDS = SEEDS[1:3]  # the report grid's best configurations are trained again at these
HELD_OUT_SPACE = "report-10k"  # a workload no rule is chosen on
HELD_OUT_SEED = 5042
SPACE_FILES = {HELD_OUT_SPACE: OUT_DIR / f"{HELD_OUT_SPACE}.toml"}  # ground truths that are not built-in spaces
STAGES = 7  # numbered from 0 in the code, from 1 in the docstring's list
HELD_OUT_STAGE = 5
HYPERPARAMETERS = ("learning_rate", "batch_size", "loss")
EPOCH_COLUMNS = ("space", *HYPERPARAMETERS, "seed", "repeat", "epoch", "train_accuracy", "train_loss",
                 "val_accuracy", "val_loss", "wall_seconds", "cpu_seconds", "train_images", "steps",
                 "weights_seed", "run", "trial_id")
UNIT_COLUMNS = ("space", *HYPERPARAMETERS, "seed", "repeat", "weights_seed", "run", "epochs", "final_val_accuracy",
                "best_val_accuracy", "best_epoch", "test_accuracy_at_best_epoch", "wall_seconds", "cpu_seconds",
                "commit", "finished_at", "machine")
METRIC_NAMES = {"train_accuracy": "accuracy", "train_loss": "loss", "val_accuracy": "val_accuracy",
                "val_loss": "val_loss", "wall_seconds": "seconds", "cpu_seconds": "cpu_seconds"}


@dataclass(frozen=True)
class Unit:
    """One configuration of a space trained for all its epochs at one seed."""

    space: str
    index: int  # the configuration's place in the space's grid order
    configuration: dict[str, Any]
    seed: int
    repeat: int = 0  # 1: a second training at the same seed (run-to-run noise)

    @property
    def weights_seed(self) -> int:
        return self.seed + self.index

    @property
    def run_name(self) -> str:
        return f"gt-{self.space}-s{self.seed}-c{self.index:02d}" + (f"-r{self.repeat}" if self.repeat else "")

    def key(self) -> tuple[str, ...]:
        return (self.space, *(str(self.configuration[name]) for name in HYPERPARAMETERS), str(self.seed),
                str(self.repeat))


def row_key(row: dict[str, str]) -> tuple[str, ...]:
    return (row["space"], *(row[name] for name in HYPERPARAMETERS), row["seed"], row["repeat"])


def whole_trainings(rows: list[dict[str, str]], space: str, epochs: int) -> dict[tuple[str, ...], list[dict[str, str]]]:
    """The epoch rows of each first training (repeat 0) of ``space`` recorded for all ``epochs`` epochs, in epoch
    order, by :func:`row_key`."""
    grouped: dict[tuple[str, ...], list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        if row["space"] == space and row["repeat"] == "0":
            grouped[row_key(row)].append(row)
    return {key: sorted(trained, key=lambda r: int(r["epoch"])) for key, trained in grouped.items()
            if sorted(int(r["epoch"]) for r in trained) == list(range(1, epochs + 1))}


def read_csv(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as file:
        return list(csv.DictReader(file))


def write_csv(path: Path, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> None:
    """Write the whole table atomically (a kill leaves the previous file)."""
    from kmnist_search.base.files import atomic_write_text

    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    atomic_write_text(path, buffer.getvalue())


def commit() -> str:
    try:
        head = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "kmnist_search"], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def space_named(space_name: str) -> Any:
    """A ground truth's search space: a built-in one, or one of :data:`SPACE_FILES`."""
    from kmnist_search.data.spaces import load_space

    return load_space(str(SPACE_FILES.get(space_name, space_name)))


def units_of(space_name: str, seeds: tuple[int, ...], repeat: int = 0) -> Iterator[Unit]:
    """The space's whole grid at each seed, one seed's grid before the next seed's."""
    configurations = list(enumerate(space_named(space_name).configurations()))
    for seed in seeds:
        for index, configuration in configurations:
            yield Unit(space_name, index, configuration, seed, repeat)


def seed_units(space_name: str, seeds: tuple[int, ...], ranked: list[dict[str, Any]]) -> Iterator[Unit]:
    """Each of the ``ranked`` configurations at every seed, best first: the best one's seed spread lands first."""
    configurations = space_named(space_name).configurations()
    for configuration in ranked:
        for seed in seeds:
            yield Unit(space_name, configurations.index(configuration), configuration, seed)


def seed_grids(space_name: str, seeds: tuple[int, ...], ranked: list[dict[str, Any]]) -> Iterator[Unit]:
    """All ``ranked`` configurations at one seed, best first, then at the next seed: each seed's whole grid
    (which the replay needs) lands as soon as it can."""
    configurations = space_named(space_name).configurations()
    for seed in seeds:
        for configuration in ranked:
            yield Unit(space_name, configurations.index(configuration), configuration, seed)


def best_configurations(rows: list[dict[str, str]], space: str, seed: int,
                        count: int | None) -> list[dict[str, Any]] | None:
    """The ``count`` configurations (all when None) with the highest final validation accuracy at ``seed``,
    best first; None until every configuration of the space has finished at that seed."""
    configurations = space_named(space).configurations()
    final: dict[int, float] = {}
    for index, configuration in enumerate(configurations):
        unit = Unit(space, index, configuration, seed)
        epochs = [r for r in rows if row_key(r) == unit.key()]
        if not epochs:
            return None
        final[index] = float(max(epochs, key=lambda r: int(r["epoch"]))["val_accuracy"])
    ranked = sorted(final, key=lambda index: -final[index])
    return [configurations[index] for index in ranked[:count]]


def train(unit: Unit, dataset: Any, project_dir: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Train (or resume) one unit; its epoch rows and its unit row."""
    import keras

    from kmnist_search import pipeline

    full = space_named(unit.space)
    space = replace(full, hyperparameters={name: (value,) for name, value in unit.configuration.items()})
    result = pipeline.search(space, "grid", dataset=dataset, project_dir=project_dir, name=unit.run_name,
                             seed=SPLIT_SEED, init_seed=unit.weights_seed, prune="none")
    assert result is not None
    trial = result.trials[0]
    train_images = result.results.dataset.train_images
    steps_per_epoch = -(-train_images // int(unit.configuration["batch_size"]))
    epochs = []
    for entry in trial.history:
        logged = entry.model_dump()
        epochs.append({"space": unit.space, **unit.configuration, "seed": unit.seed, "repeat": unit.repeat,
                       "epoch": entry.epoch,
                       **{column: _rounded(logged.get(name)) for column, name in METRIC_NAMES.items()},
                       "train_images": train_images, "steps": steps_per_epoch * entry.epoch,
                       "weights_seed": unit.weights_seed, "run": unit.run_name, "trial_id": trial.trial_id})
    final = epochs[-1]
    summary = {"space": unit.space, **unit.configuration, "seed": unit.seed, "repeat": unit.repeat,
               "weights_seed": unit.weights_seed, "run": unit.run_name, "epochs": len(epochs),
               "final_val_accuracy": final["val_accuracy"], "best_val_accuracy": _rounded(trial.best_val_accuracy),
               "best_epoch": trial.best_epoch,
               "test_accuracy_at_best_epoch": _rounded(result.winner.test_accuracy),
               "wall_seconds": round(sum(float(e["wall_seconds"] or 0) for e in epochs), 2),
               "cpu_seconds": round(sum(float(e["cpu_seconds"] or 0) for e in epochs), 2),
               "commit": commit(), "finished_at": result.results.finished_at, "machine": machine()}
    for heavy in [*result.run_dir.path.rglob("*.h5"), *result.run_dir.path.rglob("*.keras"),
                  *result.run_dir.path.rglob("*.npz")]:
        heavy.unlink()  # the record stays; the weights are not needed again (about 30 MB a unit)
    keras.backend.clear_session()
    gc.collect()
    return epochs, summary


def _rounded(value: Any) -> Any:
    return None if value is None else round(float(value), 6)


def main() -> int:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--data-dir", type=Path, required=True, help="the four official kmnist-*.npz files")
    parser.add_argument("--project-dir", type=Path, default=ROOT / "runs" / "ground-truth",
                        help="where the units' run folders live (default runs/ground-truth)")
    parser.add_argument("--out-dir", type=Path, default=OUT_DIR, help="where the CSV files go")
    parser.add_argument("--stop-after", type=int, metavar="N", help="stop after training N units (testing)")
    args = parser.parse_args()
    from kmnist_search.commands.tensorflow_start import load_tensorflow_quietly
    from kmnist_search.data.datasets import load_dataset

    dataset = load_dataset("kmnist", args.data_dir, None)
    load_tensorflow_quietly()
    trained = 0
    for stage in range(STAGES):
        units = list(stage_units(stage, args.out_dir))
        for unit in units:
            epochs_path = args.out_dir / f"{unit.space}.csv"
            epoch_rows = read_csv(epochs_path)
            done = {row_key(row) for row in epoch_rows}
            if unit.key() in done:
                continue
            if args.stop_after is not None and trained >= args.stop_after:
                return 0
            started = time.monotonic()
            epochs, summary = train(unit, dataset, args.project_dir)
            write_csv(epochs_path, EPOCH_COLUMNS, [*epoch_rows, *epochs])
            units_path = args.out_dir / "units.csv"
            write_csv(units_path, UNIT_COLUMNS,
                      [r for r in read_csv(units_path) if row_key(r) != unit.key()] + [summary])
            trained += 1
            print(f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} {unit.run_name} {unit.configuration}: final val "
                  f"{float(summary['final_val_accuracy']) * 100:.2f}% (cpu {summary['cpu_seconds']:.0f} s, "
                  f"{time.monotonic() - started:.0f} s here)", flush=True)
        if not units:
            print("the report grid's other seeds wait for every report configuration at the first seed", flush=True)
            return 0
    print("ground truth complete", flush=True)
    return 0


def settling_trainings(space_name: str, configurations: int) -> int:
    """How many whole trainings (a configuration at a seed) settle a space's true best: every configuration at
    one seed, the best ones at three (stages 1 to 4)."""
    if space_name == "report-small":
        return configurations * len(SEEDS)
    return configurations + TOP_CONFIGURATIONS * len(REPORT_REPLICATE_SEEDS)


def planned_trainings(space_name: str, configurations: int) -> int:
    """How many whole trainings of a space the command makes in all (stage 2's repeats aside)."""
    if space_name == "report-small":
        return configurations * len(SEEDS)
    if space_name == HELD_OUT_SPACE:
        return configurations
    return configurations * (1 + len(REPORT_REPLICATE_SEEDS))


def stage_units(stage: int, out_dir: Path) -> Iterator[Unit]:
    """The units of a stage (numbered from 0: stage 0 is the docstring's 1), done or not; the stages that follow
    the report grid's ranking yield nothing until its first seed is complete."""
    if stage == 0:
        yield from units_of("report-small", SEEDS)
    elif stage == 1:
        yield from units_of("report-small", SEEDS[:1], repeat=1)
    elif stage == 2:
        yield from units_of("report", SEEDS[:1])
    elif stage == HELD_OUT_STAGE:
        yield from units_of(HELD_OUT_SPACE, (HELD_OUT_SEED,))
    else:
        count = TOP_CONFIGURATIONS if stage == 3 else None
        ranked = best_configurations(read_csv(out_dir / "report.csv"), "report", SEEDS[0], count)
        if ranked is None:
            return
        if stage == 3:
            yield from seed_units("report", REPORT_REPLICATE_SEEDS, ranked)
        else:
            seeds = REPORT_REPLICATE_SEEDS[:1] if stage == 4 else REPORT_REPLICATE_SEEDS[1:]
            yield from seed_grids("report", seeds, ranked)


if __name__ == "__main__":
    sys.exit(main())
