"""What each strategy and pruner costs, and what it costs in regret: searches replayed on the ground truth.

Run: python benchmarks/replay_pruners.py [--space report-small] [--space report]

Reads benchmarks/ground_truth/SPACE.csv (written by benchmarks/ground_truth.py) and replays, on every
seed's curves, each strategy with each pruner through the search's own oracles and pruners
(:mod:`kmnist_search.search.replay`). For each pair it reports, averaged over the seeds' curves and the
strategy's orders or seeds (Bayesian search: ORDERS seeds on each ground truth, spread over its seeds' curves):

- cost: epochs and CPU seconds trained, as a fraction of the same search without pruning (Hyperband:
  of the whole grid unpruned);
- regret: the true best configuration's final validation accuracy minus the declared winner's, in
  points, both from the ground truth (each configuration's epoch-12 validation accuracy, averaged
  over its seeds);
- survival: how often the true best configuration was trained to the end.

The main rules are also replayed on workloads none was chosen on: each ground truth's curves cut at fewer
epochs or narrowed to fewer configurations, and the held-out ground truth (``report-10k``: another subset
at another seed), which takes no part in choosing the default.

Writes benchmarks/ground_truth/replay.json (the figures, with the command, machine and date) and
docs/images/replay-cost-regret.png; prints the table.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import resource
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from typing import Any

from ground_truth import (
    HELD_OUT_SEED,
    HELD_OUT_SPACE,
    HELD_OUT_STAGE,
    HYPERPARAMETERS,
    OUT_DIR,
    TOP_CONFIGURATIONS,
    planned_trainings,
    read_csv,
    settling_trainings,
    space_named,
    whole_trainings,
)
from records import ROOT, description, read_record, write_into, write_record

FIGURE = ROOT / "docs" / "images" / "replay-cost-regret.png"
DOC = ROOT / "docs" / "pruning.md"
RECORD = OUT_DIR / "replay.json"
ORDERS = 5  # shuffled grid orders and seeds of random search per ground-truth seed; Bayesian seeds per ground truth
FINAL_EPOCH = 12
MAX_COST = 0.35  # the cost bound a default pruner must meet, as a fraction of the unpruned search
UNSEEN_REGRET, UNSEEN_COST = 0.5, 0.40  # a default must hold these on workloads it was not chosen on
# also replayed on Bayesian search and the workloads
MAIN_RULES = ("median (warm-up 1)", "ASHA (1, 3)", "catch-up", "catch-up (slowing)", "catch-up (slowing, peers)")


@dataclass(frozen=True)
class Scenario:
    strategy: str
    label: str
    order: int  # 0: the space's own order; k: the k-th shuffled order (grid) or search seed


def typed(space_name: str, name: str, text: str) -> Any:
    return {"learning_rate": float, "batch_size": int, "loss": str}[name](text)


def recorded_runs(rows: list[dict[str, str]], space_name: str) -> dict[int, dict[str, Any]]:
    """Seed -> configuration key -> RecordedRun, from the epoch rows of whole 12-epoch trainings."""
    from kmnist_search.search.pruners import Curve
    from kmnist_search.search.replay import RecordedRun, configuration_key

    by_seed: dict[int, dict[str, Any]] = defaultdict(dict)
    for epochs in whole_trainings(rows, space_name, FINAL_EPOCH).values():
        first = epochs[0]
        values = {name: typed(space_name, name, first[name]) for name in HYPERPARAMETERS}
        by_seed[int(first["seed"])][configuration_key(values)] = RecordedRun(
            Curve(tuple(float(r["val_accuracy"]) for r in epochs), int(first["steps"])),
            tuple(float(r["cpu_seconds"]) for r in epochs))
    return by_seed


def rules() -> dict[str, Any]:
    """The rules compared, each as the ``[pruning]`` settings a user would write (``Pruning``)."""
    from kmnist_search.data.spaces import Pruning

    return {
        "none": Pruning("none"),
        "median (warm-up 1)": Pruning("median", warmup_epochs=1, min_trials=3),
        "median (warm-up 3)": Pruning("median", warmup_epochs=3, min_trials=3),
        "25th percentile": Pruning("percentile", warmup_epochs=1, min_trials=3, percentile=25),
        "median at equal steps": Pruning("median", warmup_epochs=1, min_trials=3, budget="steps"),
        "25th pct at equal steps": Pruning("percentile", warmup_epochs=1, min_trials=3, percentile=25, budget="steps"),
        "ASHA (1, 3)": Pruning("asha", min_epochs=1, reduction=3),
        "ASHA (1, 4)": Pruning("asha", min_epochs=1, reduction=4),
        "ASHA (2, 3)": Pruning("asha", min_epochs=2, reduction=3),
        "catch-up": Pruning("catch-up", pace="held", peers=False),
        "catch-up (slowing)": Pruning("catch-up", pace="slowing", peers=False),
        "catch-up (slowing, peers)": Pruning("catch-up", pace="slowing", peers=True),
    }


def pruners(strategy: str, epochs: int = FINAL_EPOCH) -> dict[str, Any]:
    """Each rule's pruner, built by the live search's own ``make_pruner``; Bayesian search (its Gaussian process
    refitted with 20 restarts every trial) with the main ones beside no pruning."""
    from kmnist_search.search.pruners import make_pruner

    built = {name: make_pruner(settings, epochs) for name, settings in rules().items()}
    if strategy == "bayesian":
        return {name: built[name] for name in ("none", *MAIN_RULES)}
    return built


def shuffled(space: Any, order: int) -> Any:
    """The space with each hyperparameter's values listed in another order (order 0: as written)."""
    if order == 0:
        return space
    generator = random.Random(order)
    return replace(space, hyperparameters={name: tuple(generator.sample(values, len(values)))
                                           for name, values in space.hyperparameters.items()})


def scenarios(bayesian: Iterable[int]) -> list[Scenario]:
    grid = [Scenario("grid", "grid (space order)", 0)]
    grid += [Scenario("grid", "grid (shuffled)", k) for k in range(1, ORDERS + 1)]
    return [*grid, *(Scenario("random", "random (10 trials)", k) for k in range(ORDERS)),
            *(Scenario("bayesian", "Bayesian (10 trials)", k) for k in bayesian)]


def bayesian_seeds(index: int, seeds: int) -> list[int]:
    """The Bayesian search seeds replayed on the ``index``-th of a ground truth's ``seeds`` seeds: ORDERS per
    ground truth, spread over its seeds (Keras Tuner refits its Gaussian process with 20 restarts at every
    proposal, most of a replay's CPU time)."""
    return [k for k in range(ORDERS) if k % seeds == index]


Measures = dict[tuple[str, str], list[dict[str, float]]]  # (strategy or workload, pruner) -> one per search


def evaluate(space_name: str) -> dict[str, Any] | None:
    """The replay of one ground truth; None until some seed has every configuration recorded. Each seed's
    searches replay in a process of their own, as many at once as the machine has cores."""
    space = space_named(space_name)
    by_seed = recorded_runs(read_csv(OUT_DIR / f"{space_name}.csv"), space_name)
    configurations = len(space.configurations())
    seeds = sorted(seed for seed, runs in by_seed.items() if len(runs) == configurations)
    if not seeds:
        return None
    truth, finals = true_scores(by_seed, FINAL_EPOCH)
    best = max(truth, key=truth.__getitem__)
    best_sd = statistics.stdev(finals[best]) if len(finals[best]) > 1 else None
    variants = workload_truths(space, {seed: by_seed[seed] for seed in seeds})
    processes = min(os.cpu_count() or 1, 2 * len(seeds))
    started_cpu, started_wall = cpu_seconds(), time.monotonic()
    with ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("fork")) as pool:
        searches = [pool.submit(replay_searches, space_name, by_seed[seed], truth, best,
                                bayesian_seeds(index, len(seeds))) for index, seed in enumerate(seeds)]
        workload_searches = [pool.submit(replay_workloads, by_seed[seed], variants) for seed in seeds]
        rows, workload_measures = merged(f.result() for f in searches), merged(f.result() for f in workload_searches)
    table = [{"strategy": strategy, "pruner": pruner, **mean_of(measures), "replays": len(measures)}
             for (strategy, pruner), measures in rows.items()]
    workload_rows = workload_table(workload_measures, {w.label: len(w.keys) for w in variants})
    confirmation = confirm_replays(by_seed, seeds, truth, best) if len(seeds) >= 3 else []
    return {"space": space_name, "seeds": seeds, "configurations": configurations,
            "true_best": json.loads(best), "true_best_final_val_accuracy": round(truth[best], 6),
            "true_best_seeds": len(finals[best]),
            "true_best_seed_sd_points": None if best_sd is None else round(best_sd * 100, 3),
            "trainings_recorded": sum(len(runs) for runs in by_seed.values()),
            "trainings_planned": planned_trainings(space_name, configurations),
            "trainings_settling_best": settling_trainings(space_name, configurations),
            "replays": sum(row["replays"] for row in (*table, *workload_rows)),
            "replay_cpu_seconds": round(cpu_seconds() - started_cpu, 1),
            "replay_wall_seconds": round(time.monotonic() - started_wall, 1), "replay_processes": processes,
            "table": table,
            "workloads": workload_rows, "confirmation": confirmation}


def cpu_seconds() -> float:
    """CPU seconds of this process and of its finished child processes."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def merged(parts: Iterable[Measures]) -> Measures:
    whole: Measures = defaultdict(list)
    for part in parts:
        for key, measures in part.items():
            whole[key].extend(measures)
    return whole


def replay_searches(space_name: str, recorded: dict[str, Any], truth: dict[str, float], best: str,
                    bayesian: list[int]) -> Measures:
    """Every strategy with every pruner on one seed's curves (Bayesian search with the given seeds)."""
    from kmnist_search.search.replay import replay

    space = space_named(space_name)
    configurations = len(space.configurations())
    rows: Measures = defaultdict(list)
    for scenario in scenarios(bayesian):
        searched = shuffled(space, scenario.order) if scenario.strategy == "grid" else space
        baseline = None
        for label, pruner in pruners(scenario.strategy).items():
            outcome = replay(searched, scenario.strategy, recorded, pruner, 42 + scenario.order)
            baseline = baseline or outcome
            rows[(scenario.label, label)].append(measure(outcome, baseline, truth, best, FINAL_EPOCH))
    unpruned_cpu = sum(sum(run.cpu_seconds) for run in recorded.values())
    for order in range(ORDERS):
        outcome = replay(space, "hyperband", recorded, None, 42 + order)
        full = type(outcome)((), best, configurations * FINAL_EPOCH, unpruned_cpu)
        rows[("Hyperband (factor 3)", "its own brackets")].append(measure(outcome, full, truth, best, FINAL_EPOCH))
    return rows


def true_scores(by_seed: dict[int, dict[str, Any]], epochs: int) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Each configuration's validation accuracy after ``epochs`` epochs at every seed that trained it, and
    their mean: the ground truth a declared winner is scored by."""
    finals: dict[str, list[float]] = defaultdict(list)
    for runs in by_seed.values():
        for key, run in runs.items():
            finals[key].append(run.curve.values[epochs - 1])
    return {key: statistics.fmean(values) for key, values in finals.items()}, dict(finals)


def workloads(space: Any, whole: bool = False) -> list[tuple[str, Any]]:
    """Searches no rule was designed on: shorter budgets (the curves cut at fewer epochs), and the grid
    without one learning rate or with one loss only; with ``whole``, first the whole grid itself."""
    variants = [(f"{space.epochs} epochs, the whole grid", space)] if whole else []
    variants += [(f"{epochs} epochs", space.with_epochs(epochs)) for epochs in (4, 6, 9)]
    for name, values in space.hyperparameters.items():
        if name not in ("learning_rate", "loss"):
            continue
        for value in values:
            kept = tuple(v for v in values if v != value) if name == "learning_rate" else (value,)
            label = f"without {name} {value}" if name == "learning_rate" else f"{name} {value} only"
            variants.append((label, replace(space, hyperparameters={**space.hyperparameters, name: kept})))
    return variants


@dataclass(frozen=True)
class Workload:
    """A search no rule was designed on: its space, its configurations, their truth and its true best."""

    label: str
    space: Any
    keys: frozenset[str]
    truth: dict[str, float]
    best: str


def workload_truths(space: Any, by_seed: dict[int, dict[str, Any]], whole: bool = False) -> list[Workload]:
    """Each workload's configurations and its truth: the mean over seeds of the curves cut at its epochs."""
    from kmnist_search.search.replay import configuration_key

    truths = []
    for label, variant in workloads(space, whole):
        keys = frozenset(configuration_key(values) for values in variant.configurations())
        truth, _ = true_scores({seed: cut(runs, keys, variant.epochs) for seed, runs in by_seed.items()},
                               variant.epochs)
        truths.append(Workload(label, variant, keys, truth, max(truth, key=truth.__getitem__)))
    return truths


def cut(runs: dict[str, Any], keys: frozenset[str], epochs: int) -> dict[str, Any]:
    """The runs of the given configurations, cut at ``epochs``."""
    from kmnist_search.search.replay import RecordedRun

    return {key: RecordedRun(run.curve.prefix(epochs), run.cpu_seconds[:epochs]) for key, run in runs.items()
            if key in keys}


def replay_workloads(runs: dict[str, Any], variants: list[Workload]) -> Measures:
    """The main rules on each workload, grid search in the space's order and in shuffled orders, on one
    seed's curves; each search also scored against the best unpruned final score on the same curves."""
    from kmnist_search.search.replay import replay

    measures: Measures = defaultdict(list)
    for workload in variants:
        epochs = workload.space.epochs
        recorded = cut(runs, workload.keys, epochs)
        finals = {key: run.curve.values[-1] for key, run in recorded.items()}
        rules = pruners("grid", epochs)
        for order in range(ORDERS + 1):
            searched = shuffled(workload.space, order)
            baseline = replay(searched, "grid", recorded, rules["none"], 42)
            for name in ("none", *MAIN_RULES):
                outcome = baseline if name == "none" else replay(searched, "grid", recorded, rules[name], 42)
                measured = measure(outcome, baseline, workload.truth, workload.best, epochs)
                measured["run_regret_points"] = (max(finals.values()) - finals[outcome.winner]) * 100
                measured["space_order"] = float(order == 0)
                measures[(workload.label, name)].append(measured)
    return measures


def workload_table(measures: Measures, configurations: dict[str, int]) -> list[dict[str, Any]]:
    """Per workload and rule: mean cost and regret, the worst regret, how often the true best survived and how
    often the search held the unseen-workload bounds, in every order and in the space's own order."""
    def held(values: list[dict[str, float]]) -> float:
        return round(statistics.fmean(m["run_regret_points"] <= UNSEEN_REGRET and m["epochs_fraction"] <= UNSEEN_COST
                                      for m in values), 4)

    return [{"workload": label, "configurations": configurations[label], "pruner": name,
             **{k: v for k, v in mean_of(values).items() if k != "space_order"},
             "worst_regret_points": round(max(m["regret_points"] for m in values), 4),
             "within_unseen_bounds": held(values),
             "within_unseen_bounds_space_order": held([m for m in values if m["space_order"]]),
             "replays": len(values)} for (label, name), values in measures.items()]


def confirm_replays(by_seed: dict[int, dict[str, Any]], seeds: list[int], truth: dict[str, float],
                    best: str) -> list[dict[str, Any]]:
    """What --confirm K buys after an unpruned grid: the winner by one seed's curves, against the winner by
    the mean of three seeds over that seed's K best (through kmnist_search.search.confirm's own ranking)."""
    from kmnist_search.search.confirm import RUNS_PER_CONFIGURATION, ConfirmationRun, ConfirmedConfiguration, ranked

    rows = []
    for k in (0, 1, 2, 3, 5):
        regrets = []
        for index, seed in enumerate(seeds):
            scores = {key: run.curve.best() for key, run in by_seed[seed].items()}
            top = sorted(scores, key=lambda key: -scores[key])[:max(k, 1)]
            if k == 0:
                winner = top[0]
            else:
                others = [seeds[(index + j) % len(seeds)] for j in range(RUNS_PER_CONFIGURATION)]
                winner = ranked([ConfirmedConfiguration(key, {}, tuple(
                    ConfirmationRun(str(other), other, by_seed[other][key].curve.best(), 0) for other in others))
                    for key in top]).winner.trial_id
            regrets.append((truth[best] - truth[winner]) * 100)
        rows.append({"k": k, "extra_trainings": k * (RUNS_PER_CONFIGURATION - 1),
                     "regret_points": round(statistics.fmean(regrets), 4), "searches": len(regrets)})
    return rows


def evaluate_held_out() -> dict[str, Any] | None:
    """The main rules on the held-out ground truth (one seed, no part in choosing the default): the whole grid,
    and the same cuts and narrower grids as the other workloads; None until its grid is recorded."""
    space = space_named(HELD_OUT_SPACE)
    runs = recorded_runs(read_csv(OUT_DIR / f"{HELD_OUT_SPACE}.csv"), HELD_OUT_SPACE).get(HELD_OUT_SEED, {})
    if len(runs) < len(space.configurations()):
        return None
    started_cpu, started_wall = cpu_seconds(), time.monotonic()
    variants = workload_truths(space, {HELD_OUT_SEED: runs}, whole=True)
    rows = workload_table(replay_workloads(runs, variants), {w.label: len(w.keys) for w in variants})
    return {"space": HELD_OUT_SPACE, "seed": HELD_OUT_SEED, "train_images": space.train_images,
            "trainings_recorded": len(runs), "replays": sum(row["replays"] for row in rows),
            "replay_cpu_seconds": round(cpu_seconds() - started_cpu, 1),
            "replay_wall_seconds": round(time.monotonic() - started_wall, 1), "workloads": rows}


def measure(outcome: Any, baseline: Any, truth: dict[str, float], best: str, epochs: int) -> dict[str, float]:
    survived = any(t.configuration == best and t.epochs == epochs for t in outcome.trials)
    return {"epochs_fraction": outcome.epochs / baseline.epochs,
            "cpu_fraction": outcome.cpu_seconds / baseline.cpu_seconds,
            "regret_points": (truth[best] - truth[outcome.winner]) * 100,
            "best_survives": float(survived)}


def mean_of(measures: list[dict[str, float]]) -> dict[str, float]:
    return {name: round(statistics.fmean(m[name] for m in measures), 4) for name in measures[0]}


def render_table(result: dict[str, Any]) -> str:
    """The replay of one ground truth as a Markdown table (docs/pruning.md holds exactly this)."""
    best = ", ".join(f"{name} {value}" for name, value in result["true_best"].items())
    sd = result["true_best_seed_sd_points"]
    lines = [f"`{result['space']}`, curves of seeds {', '.join(map(str, result['seeds']))}; true best: {best} "
             f"({result['true_best_final_val_accuracy'] * 100:.2f}% final validation accuracy, mean of "
             f"{result['true_best_seeds']} seeds" + (f", seed sd {sd:.2f} points" if sd is not None else "") + "). "
             f"Trainings recorded: {result['trainings_recorded']} of {result['trainings_planned']}"
             + (f" ({result['trainings_settling_best']} settle the true best: every configuration at one seed, "
                f"the best {TOP_CONFIGURATIONS} at three). "
                if result["trainings_settling_best"] < result["trainings_planned"] else ". ") +
             f"Its {result['replays']} searches replayed in {result['replay_wall_seconds']:.0f} s "
             f"({result['replay_cpu_seconds']:.0f} CPU seconds, {result['replay_processes']} processes).",
             "",
             "| strategy | pruner | epochs | CPU seconds | regret (points) | true best survives | replays |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for row in result["table"]:
        lines.append(f"| {row['strategy']} | {row['pruner']} | {row['epochs_fraction']:.2f}x | "
                     f"{row['cpu_fraction']:.2f}x | {row['regret_points']:.2f} | {row['best_survives'] * 100:.0f}% | "
                     f"{row['replays']} |")
    if sd is not None:
        for strategy in ("grid (space order)", "grid (shuffled)"):
            within = [row["pruner"] for row in result["table"] if row["strategy"] == strategy
                      and row["pruner"] != "none" and row["regret_points"] <= sd and row["cpu_fraction"] <= MAX_COST]
            lines += ["", f"Within both bounds for the {strategy} (mean regret at most the true best's seed sd, at "
                      f"most {MAX_COST}x the CPU seconds): {', '.join(within) or 'no pruner'}."]
    if result.get("workloads"):
        lines += ["", "Workloads no rule was chosen on: grid search (the space's order and "
                  f"{ORDERS} shuffled orders) with the curves cut at fewer epochs, without one learning rate, or "
                  f"with one loss. {HELD} Regret is against the mean over seeds, as above.", "",
                  *render_workloads(result["workloads"])]
    if result.get("confirmation"):
        lines += ["", f"After the unpruned grid, `--confirm K` on the same curves (each of the {len(result['seeds'])} "
                  "seeds in turn as the search's, the next seeds as the extra runs):", "",
                  "| K | extra trainings | regret (points) |", "|---:|---:|---:|"]
        lines += [f"| {row['k']} | {row['extra_trainings']} | {row['regret_points']:.2f} |"
                  for row in result["confirmation"]]
        cleared = next((row["k"] for row in result["confirmation"] if row["k"] and row["regret_points"] == 0), None)
        lines += ["", f"The smallest K that leaves no regret on these curves: {cleared}." if cleared is not None
                  else "No K here leaves the regret at zero."]
    return "\n".join(lines)


HELD = (f"*Held* is the share of searches whose winner's final score is within {UNSEEN_REGRET} points of the best "
        f"final score on the same curves, at no more than {UNSEEN_COST}x the epochs of the same search unpruned; "
        "*in space order*, the same for the searches in the order the space lists its values, as a user's grid runs.")


def render_workloads(rows: list[dict[str, Any]]) -> list[str]:
    """The workload table's lines, and which rules held on every workload."""
    lines = ["| workload | configurations | pruner | epochs | regret (points) | worst regret | same-curves "
             "regret | held | held in space order | replays |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {row['workload']} | {row['configurations']} | {row['pruner']} | {row['epochs_fraction']:.2f}x | "
              f"{row['regret_points']:.2f} | {row['worst_regret_points']:.2f} | {row['run_regret_points']:.2f} | "
              f"{row['within_unseen_bounds'] * 100:.0f}% | {row['within_unseen_bounds_space_order'] * 100:.0f}% | "
              f"{row['replays']} |" for row in rows]
    for column, searches in (("within_unseen_bounds", "every search"),
                             ("within_unseen_bounds_space_order", "every search in the space's order")):
        held = [name for name in MAIN_RULES if (ruled := [row for row in rows if row["pruner"] == name])
                and all(row[column] == 1 for row in ruled)]
        lines += ["", f"Held on every workload in {searches}: {', '.join(held) or 'no rule'}."]
    return lines


def render_held_out(result: dict[str, Any] | None) -> str:
    """The held-out ground truth's section of docs/pruning.md (what it will hold, until it is recorded)."""
    if result is None:
        return (f"The held-out ground truth, `{HELD_OUT_SPACE}`, is replayed here once all its configurations are "
                f"recorded (benchmarks/ground_truth.py, stage {HELD_OUT_STAGE + 1}).")
    return "\n".join([
        f"`{result['space']}`: the `report` grid on a stratified subset of {result['train_images']:,} training "
        f"images, trained once at seed {result['seed']}, which no other ground truth uses; no rule was chosen on "
        "it. Grid search in the space's order and "
        f"{ORDERS} shuffled orders, on the whole grid and on the same cuts and narrower grids as above. {HELD} "
        "With one seed, regret is against the same curves. "
        f"Its {result['replays']} searches replayed in {result['replay_wall_seconds']:.0f} s "
        f"({result['replay_cpu_seconds']:.0f} CPU seconds).", "", *render_workloads(result["workloads"])])


def shuffled_grid_rows(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A ground truth's shuffled-grid rows by pruner (``none``: the same searches unpruned)."""
    return {row["pruner"]: row for row in result["table"] if row["strategy"] == "grid (shuffled)"}


def ranked_rules(results: list[dict[str, Any]]) -> dict[str, list[str]]:
    """The rules in shuffled grid orders that are, on every ground truth: within both bounds (mean regret at
    most the true best's seed sd, at most MAX_COST of the CPU seconds); within the regret bound; adding no
    regret to the unpruned search's. Each list cheapest first by the mean of the CPU fractions."""
    tables = [shuffled_grid_rows(result) for result in results]
    rules = [name for name in tables[0] if name != "none" and all(name in table for table in tables)]

    def everywhere(test: Any) -> list[str]:
        kept = [name for name in rules if all(test(table[name], table, result)
                                              for table, result in zip(tables, results, strict=True))]
        return sorted(kept, key=lambda name: statistics.fmean(table[name]["cpu_fraction"] for table in tables))

    def in_bound(row: dict[str, Any], table: dict[str, Any], result: dict[str, Any]) -> bool:
        return bool(row["regret_points"] <= result["true_best_seed_sd_points"])

    return {"both bounds": everywhere(lambda row, table, result: in_bound(row, table, result)
                                      and row["cpu_fraction"] <= MAX_COST),
            "regret bound": everywhere(in_bound),
            "no added regret": everywhere(lambda row, table, result: row["regret_points"]
                                          <= table["none"]["regret_points"])}


def default_rule(results: list[dict[str, Any]]) -> str | None:
    """The rule the verdict makes the default: the cheapest within both bounds, else the cheapest within the
    regret bound, else the cheapest that adds no regret to the unpruned search; None while it waits."""
    return None if waiting(results) else first_rule(ranked_rules(results))


def first_rule(ranked: dict[str, list[str]]) -> str | None:
    """The cheapest rule of the first non-empty list, in the order the lists are tried."""
    return next((names[0] for names in ranked.values() if names), None)


def waiting(results: list[dict[str, Any]]) -> str | None:
    """Why no verdict can be read yet, or None."""
    spaces = [result["space"] for result in results]
    if sorted(spaces) != ["report", "report-small"]:
        return ("Which rule may be the default is decided on both ground truths together; replayed so far: "
                + (", ".join(f"`{space}`" for space in spaces) or "none") + ".")
    unfinished = [result for result in results if result["trainings_recorded"] < result["trainings_settling_best"]]
    if unfinished:
        return ("Which configuration is the true best, and so the regret bound (its seed sd), is settled once the "
                "ground truth is complete; recorded so far: " + ", ".join(
                    f"`{r['space']}` {r['trainings_recorded']} of {r['trainings_settling_best']} trainings"
                    for r in unfinished) + ". The verdict waits for benchmarks/ground_truth.py.")
    return None


def verdict(results: list[dict[str, Any]]) -> str:
    """Which rule is the default, and why, from the shuffled grid orders of both ground truths: the rules within
    both bounds (with how often each held on the workloads it was not chosen on); when none is, the trade-off
    and why the bound is out of reach, with every rule's cost on each ground truth."""
    reason = waiting(results)
    if reason:
        return reason
    ranked = ranked_rules(results)
    tables = [shuffled_grid_rows(result) for result in results]
    on = " and ".join(f"`{result['space']}`" for result in results)

    def costs(names: list[str]) -> str:
        return "; ".join(f"{name} at " + " and ".join(f"{table[name]['cpu_fraction']:.2f}x" for table in tables)
                         for name in names) or "no rule"

    chosen = ranked["both bounds"]
    if chosen:
        held = {name: [row["within_unseen_bounds"] for result in results for row in result.get("workloads", [])
                       if row["pruner"] == name] for name in chosen}
        return "Within both bounds on both ground truths (cheapest first): " + ", ".join(
            f"{name} ({statistics.fmean(table[name]['cpu_fraction'] for table in tables):.2f}x the CPU seconds"
            + (f", held on {statistics.fmean(held[name]) * 100:.0f}% of the workload searches)" if held[name] else ")")
            for name in chosen) + f". The default: {chosen[0]}."
    sentences = ["No rule is within both bounds on both ground truths."]
    noisy = [(result, table["none"]["regret_points"]) for result, table in zip(results, tables, strict=True)
             if table["none"]["regret_points"] > result["true_best_seed_sd_points"]]
    if noisy:
        sentences.append("Even the unpruned grid's regret is above the true best's seed sd on " + " and ".join(
            f"`{result['space']}` ({regret:.2f} against {result['true_best_seed_sd_points']:.2f} points)"
            for result, regret in noisy) + ": one seed's curves rank configurations closer than the seed noise "
            "by chance, so no rule can be held to that bound there.")
    if ranked["regret bound"]:
        sentences.append(f"Within the regret bound on both, cheapest first (CPU seconds on {on}): "
                         f"{costs(ranked['regret bound'])}.")
    sentences.append(f"Adding no regret to the unpruned grid's on both, cheapest first (CPU seconds on {on}): "
                     f"{costs(ranked['no added regret'])}.")
    rule = first_rule(ranked)
    sentences.append(f"The default: {rule}." if rule else "No rule qualifies: the default stays as it is.")
    return " ".join(sentences)


def frontier(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows no other row beats on both cost (CPU fraction) and regret, cheapest first: the trade-offs
    worth choosing between."""
    kept: list[dict[str, Any]] = []
    for row in sorted(rows, key=lambda r: (r["cpu_fraction"], r["regret_points"])):
        if not kept or row["regret_points"] < kept[-1]["regret_points"]:
            kept.append(row)
    return kept


def plot(results: list[dict[str, Any]]) -> None:
    """Cost against regret: one colour per pruner, one marker per strategy, the seed sd and 0.35x marked, and
    the frontier of the shuffled grid's rules drawn through."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    markers = {"grid (space order)": "o", "grid (shuffled)": "s", "random (10 trials)": "^",
               "Bayesian (10 trials)": "D", "Hyperband (factor 3)": "*"}
    names = list(dict.fromkeys(row["pruner"] for result in results for row in result["table"]))
    colours = {name: plt.get_cmap("tab20")(index % 20) for index, name in enumerate(names)}
    figure, axes = plt.subplots(1, len(results), figsize=(6.4 * len(results) + 2.6, 4.8), squeeze=False)
    for axis, result in zip(axes[0], results, strict=True):
        for row in result["table"]:
            axis.scatter(row["cpu_fraction"], row["regret_points"], marker=markers[row["strategy"]], s=40,
                         color=colours[row["pruner"]], edgecolors="black", linewidths=0.3, zorder=3)
        front = frontier(list(shuffled_grid_rows(result).values()))
        axis.step([row["cpu_fraction"] for row in front], [row["regret_points"] for row in front], where="post",
                  color="black", linewidth=0.8, alpha=0.6, zorder=2)
        if result["true_best_seed_sd_points"] is not None:
            axis.axhline(result["true_best_seed_sd_points"], color="grey", linestyle="--", linewidth=0.8)
        axis.axvline(MAX_COST, color="grey", linestyle=":", linewidth=0.8)
        axis.set_xlabel("CPU seconds, fraction of the same search unpruned")
        axis.set_ylabel("regret (points of final validation accuracy)")
        axis.set_title(f"{result['space']} (dashed: the true best's seed sd; dotted: 0.35x; "
                       "line: the shuffled grid's frontier)", fontsize=9)
    handles = [plt.Line2D([], [], marker="o", linestyle="", color=colours[name], label=name) for name in names]
    handles += [plt.Line2D([], [], marker=marker, linestyle="", color="grey", label=strategy)
                for strategy, marker in markers.items()]
    figure.legend(handles=handles, loc="center right", fontsize=8, frameon=False)
    figure.tight_layout(rect=(0, 0, 1 - 2.6 / (6.4 * len(results) + 2.6), 1))
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(FIGURE, dpi=110)


def main() -> int:
    parser = argparse.ArgumentParser(description=description(__doc__))
    parser.add_argument("--space", action="append", help="report-small, report (default: both that are recorded)")
    parser.add_argument("--plot-only", action="store_true", help="redraw the figure from the record")
    args = parser.parse_args()
    if args.plot_only:
        plot(read_record(RECORD)["results"])
        return 0
    results = []
    for space_name in args.space or ["report-small", "report"]:
        if not (OUT_DIR / f"{space_name}.csv").is_file():
            continue
        result = evaluate(space_name)
        if result is None:
            print(f"{space_name}: no seed has all its configurations recorded yet; replayed once one has\n")
            continue
        print(render_table(result) + "\n")
        write_into(DOC, f"replay:{space_name}", render_table(result))
        results.append(result)
    held_out = evaluate_held_out()
    print(render_held_out(held_out) + "\n")
    write_into(DOC, "replay:held-out", render_held_out(held_out))
    write_record(RECORD, " ".join(["python benchmarks/replay_pruners.py", *sys.argv[1:]]),
                 {"results": results, "held_out": held_out})
    write_into(DOC, "replay:verdict", verdict(results))
    print(verdict(results))
    plot(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
