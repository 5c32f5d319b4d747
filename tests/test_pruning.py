"""The pruning rules (median, percentile, successive halving, catch-up) for every strategy but Hyperband."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import pytest

from kmnist_search.base.errors import SpaceError
from kmnist_search.data.datasets import Dataset, load_dataset
from kmnist_search.data.spaces import Pruning, load_space, parse_space
from kmnist_search.search.callbacks import PruningCallback
from kmnist_search.search.pruners import CatchUpPruner, Curve, PercentilePruner, SuccessiveHalvingPruner, make_pruner
from kmnist_search.search.runner import SearchOptions, run_search
from tests.conftest import SMALL_NETWORK, as_dict


def write_log(run_dir: Path, trial: str, accuracies: list[float]) -> None:
    trial_dir = run_dir / f"trial_{trial}"
    trial_dir.mkdir(parents=True)
    (trial_dir / "trial_log.json").write_text(json.dumps(
        {"epochs": [{"epoch": i + 1, "val_accuracy": a} for i, a in enumerate(accuracies)]}))


def callback_for(run_dir: Path, rule: Pruning, epochs: int = 3) -> PruningCallback:
    own = run_dir / "trial_9"
    own.mkdir(parents=True)
    callback = PruningCallback(own, "val_accuracy", make_pruner(rule, epochs))
    callback.set_model(SimpleNamespace(stop_training=False))  # type: ignore[arg-type]
    return callback


def test_median_rule(tmp_path: Path) -> None:
    for trial, accuracies in (("0", [0.5, 0.8, 0.9]), ("1", [0.4, 0.6, 0.7]), ("2", [0.3, 0.7]), ("3", [0.2])):
        write_log(tmp_path, trial, accuracies)
    callback = callback_for(tmp_path, Pruning("median", warmup_epochs=1, min_trials=3))
    callback.on_epoch_end(0, {"val_accuracy": 0.1})  # warm-up: never pruned
    assert not callback.model.stop_training
    callback.on_epoch_end(1, {"val_accuracy": 0.75})  # bests at epoch 2: 0.8, 0.6, 0.7 -> median 0.7
    assert not callback.model.stop_training
    callback.on_epoch_end(2, {"val_accuracy": 0.76})  # only 2 trials reached epoch 3: too few to judge
    assert not callback.model.stop_training and not (tmp_path / "trial_9" / "pruned.json").exists()


def test_median_rule_prunes_below_the_median(tmp_path: Path) -> None:
    for trial, accuracies in (("0", [0.5, 0.8]), ("1", [0.4, 0.6]), ("2", [0.3, 0.7])):
        write_log(tmp_path, trial, accuracies)
    callback = callback_for(tmp_path, Pruning("median", warmup_epochs=1, min_trials=3))
    callback.on_epoch_end(0, {"val_accuracy": 0.2})
    callback.on_epoch_end(1, {"val_accuracy": 0.65})  # best so far 0.65 < median 0.7
    assert callback.model.stop_training
    record = json.loads((tmp_path / "trial_9" / "pruned.json").read_text())
    assert record == {"epoch": 2, "value": 0.65, "threshold": pytest.approx(0.7), "trials_compared": 3,
                      "rule": "median", "reach": None, "reach_by": None}


def test_the_percentile_rule_at_equal_steps_compares_only_trials_that_took_as_many_steps() -> None:
    pruner = PercentilePruner(50, warmup_epochs=0, min_trials=2, budget="steps")
    small_batches = [Curve((0.80, 0.90), steps_per_epoch=100), Curve((0.70, 0.85), steps_per_epoch=100)]
    large_batch = Curve((0.50,), steps_per_epoch=25)  # 25 steps: no small-batch epoch ended that early
    assert pruner.decide(large_batch, small_batches) is None
    same_batch = [Curve((0.6, 0.7, 0.8, 0.9), steps_per_epoch=25), Curve((0.55, 0.75), steps_per_epoch=25)]
    stop = pruner.decide(Curve((0.5, 0.52), steps_per_epoch=25), [*small_batches, *same_batch])
    assert stop is not None and stop.threshold == pytest.approx(0.725) and stop.trials_compared == 2
    # at 100 steps the small batches stood at 0.8 and 0.7
    assert pruner.decide(Curve((0.5, 0.52, 0.6, 0.95), steps_per_epoch=25), small_batches) is None
    equal_epochs = PercentilePruner(50, warmup_epochs=0, min_trials=2)
    assert equal_epochs.decide(large_batch, small_batches) is not None  # at equal epochs it is judged at once


def test_successive_halving_keeps_the_top_third_at_each_rung() -> None:
    pruner = SuccessiveHalvingPruner(min_epochs=1, reduction=3)
    assert [epoch for epoch in range(1, 13) if pruner.is_rung(epoch)] == [1, 3, 9]
    others = [Curve((0.9,)), Curve((0.8,)), Curve((0.7,)), Curve((0.6,)), Curve((0.5,))]
    assert pruner.decide(Curve((0.85,)), others) is None  # 2 of 6 go on: 0.9 and 0.85
    stop = pruner.decide(Curve((0.75,)), others)
    assert stop is not None and stop.threshold == 0.8 and stop.rule == "top-1/3 cut"
    assert pruner.decide(Curve((0.1, 0.1)), others) is None  # epoch 2 is no rung
    assert pruner.decide(Curve((0.1,)), []) is None  # nothing to compare with


def test_catch_up_stops_only_a_trial_that_cannot_reach_the_best_score_at_its_pace() -> None:
    pruner = CatchUpPruner(epochs=5, warmup_epochs=1)
    others = [Curve((0.7, 0.8, 0.85))]
    assert pruner.decide(Curve((0.5,)), others) is None  # warm-up: no pace yet
    assert pruner.decide(Curve((0.5, 0.6)), others) is None  # +0.1 a epoch for 3 more reaches 0.9
    stop = pruner.decide(Curve((0.5, 0.55)), others)  # +0.05 a epoch reaches 0.7
    assert stop is not None and stop.epoch == 2 and stop.threshold == 0.85 and stop.reach == pytest.approx(0.7)
    assert "at most 70.00% at its recent pace, below the best score so far 85.00% of 1 trial" in stop.message()
    # a slow starter that climbs fast goes on, where the median at equal epochs stops it
    assert pruner.decide(Curve((0.3, 0.6)), others) is None
    assert PercentilePruner(50, 1, 1).decide(Curve((0.3, 0.6)), others) is not None
    # the pace is that of the best score over the last two epochs: a dip does not hide a rise
    assert pruner.decide(Curve((0.5, 0.7, 0.6)), others) is None  # (0.7 - 0.5) / 2 for 2 more: 0.9 > 0.85
    assert pruner.decide(Curve((0.5, 0.55, 0.56, 0.57)), []) is None  # nothing to compare with
    assert pruner.decide(Curve((0.1, 0.1, 0.1, 0.1, 0.1)), others) is None  # the last epoch: nothing to save


def test_catch_up_with_a_slowing_pace_carries_the_gain_as_one_over_the_epoch() -> None:
    pruner = CatchUpPruner(epochs=5, warmup_epochs=1, pace="slowing")
    others = [Curve((0.7, 0.8, 0.85))]
    # after 2 epochs at +0.1, epochs 3, 4 and 5 add 0.1 x 2/3, 2/4 and 2/5: 0.6 + 0.1567 = 0.7567 < 0.85
    stop = pruner.decide(Curve((0.5, 0.6)), others)
    assert stop is not None and stop.reach == pytest.approx(0.6 + 0.1 * (2 / 3 + 2 / 4 + 2 / 5))
    assert "at most 75.67% at its recent pace, slowing as 1/epoch, below the best score so far" in stop.message()
    assert CatchUpPruner(epochs=5, warmup_epochs=1).decide(Curve((0.5, 0.6)), others) is None  # held: 0.9
    assert pruner.decide(Curve((0.3, 0.6)), others) is None  # +0.3: 0.6 + 0.47 = 1.07 still catches up
    space = parse_space({"hyperparameters": {"batch_size": [8], "loss": ["mean_squared_error"]},
                         "training": {"epochs": 5}, "pruning": {"pace": "slowing"}})
    assert make_pruner(space.pruning, 5) == replace(pruner, peers=True)
    assert "slowing as 1/epoch" in space.pruning.describe()
    assert space.fingerprint()["pruning"]["pace"] == "slowing"
    with pytest.raises(SpaceError, match="pace must be one of held, slowing"):
        parse_space({"hyperparameters": {"batch_size": [8], "loss": ["mean_squared_error"]},
                     "training": {"epochs": 5}, "pruning": {"pace": "fast"}})


def test_catch_up_with_peers_judges_a_first_epoch_by_the_most_a_trial_as_slow_per_epoch_gained_after_it() -> None:
    pruner = CatchUpPruner(epochs=4, warmup_epochs=1, pace="slowing", peers=True)
    fast = Curve((0.80, 0.90, 0.93, 0.95), steps_per_epoch=100)  # gained 0.15 after its first epoch
    slow = Curve((0.50, 0.70, 0.85, 0.90), steps_per_epoch=10)  # gained 0.40 after its first epoch
    stop = pruner.decide(Curve((0.45,), 10), [fast, slow])  # only `slow` takes as few steps: 0.45 + 0.40 < 0.95
    assert stop is not None and stop.epoch == 1 and stop.reach == pytest.approx(0.85)
    assert "at most 85.00% at the largest gain after epoch 1 of a trial with as few steps per epoch, below the " \
           "best score so far 95.00% of 2 trials" in stop.message()
    assert pruner.decide(Curve((0.60,), 100), [fast, slow]) is None  # both count: 0.60 + 0.40 >= 0.95
    assert pruner.decide(Curve((0.45,), 5), [fast, slow]) is None  # none as slow: it waits for its own pace
    assert pruner.decide(Curve((0.45,), 10), [fast, Curve((0.50,), 10)]) is None  # no slow one trained further
    assert replace(pruner, peers=False).decide(Curve((0.45,), 10), [fast, slow]) is None
    paced = pruner.decide(Curve((0.45, 0.47), 10), [fast, slow])  # from epoch 2, its own pace: 0.47 + 0.02 x 7/6
    assert paced is not None and paced.reach_by == "its recent pace, slowing as 1/epoch"
    warming = replace(pruner, warmup_epochs=2).decide(Curve((0.45, 0.60), 10), [fast, slow])  # peers until then
    assert warming is not None and warming.reach == pytest.approx(0.60 + 0.20)


def test_catch_up_in_a_trial_records_its_reach(tmp_path: Path) -> None:
    write_log(tmp_path, "0", [0.7, 0.85, 0.9, 0.92])
    callback = callback_for(tmp_path, Pruning("catch-up", pace="held", peers=False), epochs=4)
    callback.on_epoch_end(0, {"val_accuracy": 0.4})
    callback.on_epoch_end(1, {"val_accuracy": 0.45})  # 0.45 + 0.05 x 2 = 0.55 < 0.92
    assert callback.model.stop_training
    record = json.loads((tmp_path / "trial_9" / "pruned.json").read_text())
    assert record == {"epoch": 2, "value": 0.45, "threshold": 0.92, "trials_compared": 1,
                      "rule": "best score so far", "reach": pytest.approx(0.55), "reach_by": None}


def test_pruning_settings_from_file_and_command_line() -> None:
    space = parse_space({"hyperparameters": {"batch_size": [8], "loss": ["mean_squared_error"]},
                         "training": {"epochs": 3}, "pruning": {"warmup_epochs": 2, "min_trials": 4}})
    assert space.pruning == Pruning("catch-up", 2, 4)
    assert space.with_pruning("none").pruning == Pruning("none", 2, 4)
    assert load_space("report").pruning == Pruning("catch-up", 1, 3)  # on by default: the replay's choice
    with pytest.raises(SpaceError, match=r"unknown key \[pruning\]\.patience"):
        parse_space({"hyperparameters": {"batch_size": [8], "loss": ["mean_squared_error"]},
                     "training": {"epochs": 3}, "pruning": {"patience": 2}})
    with pytest.raises(SpaceError, match=r"min_trials \(minimum trials\) must be a whole number >= 1"):
        space.with_pruning(min_trials=0)


def test_every_rule_is_set_in_the_space_file_and_checked_in_one_place() -> None:
    base = {"hyperparameters": {"batch_size": [8], "loss": ["mean_squared_error"]}, "training": {"epochs": 3}}
    asha = parse_space({**base, "pruning": {"strategy": "asha", "min_epochs": 2, "reduction": 4}})
    assert make_pruner(asha.pruning, 3) == SuccessiveHalvingPruner(2, 4)
    steps = parse_space({**base, "pruning": {"strategy": "percentile", "percentile": 25, "budget": "steps"}})
    assert make_pruner(steps.pruning, 3) == PercentilePruner(25.0, 1, 3, "steps")
    catch_up = parse_space({**base, "pruning": {"strategy": "catch-up", "warmup_epochs": 2}})
    assert make_pruner(catch_up.pruning, 12) == CatchUpPruner(12, 2, "slowing", peers=True)  # the defaults
    # earlier runs recorded three settings: a default rule still fingerprints with those three (and a catch-up
    # rule with its pace), so a run made under the median default resumes with --prune median
    assert load_space("report").fingerprint()["pruning"] == {"strategy": "catch-up", "warmup_epochs": 1,
                                                             "min_trials": 3, "pace": Pruning().pace,
                                                             "peers": Pruning().peers}
    assert load_space("report").with_pruning("median").fingerprint()["pruning"] == {
        "strategy": "median", "warmup_epochs": 1, "min_trials": 3}
    assert steps.fingerprint()["pruning"]["budget"] == "steps"
    for table, message in (({"strategy": "percentile"}, "percentile is missing"),
                           ({"strategy": "asha", "reduction": 1}, "reduction must be a whole number >= 2"),
                           ({"budget": "images"}, "budget must be one of epochs, steps"),
                           ({"strategy": "median", "percentile": 25}, "median is the 50th percentile"),
                           ({"percentile": True}, r"percentile must be a number in \(0, 100\]"),
                           ({"strategy": "hyperband"}, "strategy 'hyperband' must be one of median, percentile")):
        with pytest.raises(SpaceError, match=message):
            parse_space({**base, "pruning": table})


@pytest.mark.slow
def test_grid_search_prunes_hopeless_trials_but_visits_every_configuration(synthetic_data_dir: Path,
                                                                           tmp_path: Path) -> None:
    dataset: Dataset = load_dataset("kmnist", synthetic_data_dir, verify_checksums=False)
    space = parse_space({
        "hyperparameters": {"learning_rate": [1.0, 0.3, 0.001, 0.0001], "batch_size": [32],
                            "loss": ["categorical_crossentropy"], **SMALL_NETWORK},
        "training": {"epochs": 3, "validation_images": 100, "train_images": 400},
        "pruning": {"warmup_epochs": 1, "min_trials": 2},
    })
    results = as_dict(run_search(dataset, space, SearchOptions("grid", tmp_path, "pruned")))
    trials = {t["hyperparameters"]["learning_rate"]: t for t in results["trials"]}
    assert sorted(trials) == [0.0001, 0.001, 0.3, 1.0]
    pruned = [t for t in results["trials"] if t["status"] == "PRUNED"]
    assert pruned and all(t["epochs_run"] < 3 and t["message"].startswith(f"at epoch {t['epochs_run']}:")
                          for t in pruned)
    stopped = {t["hyperparameters"]["learning_rate"] for t in pruned}
    assert {0.001, 0.0001} <= stopped and 1.0 not in stopped  # the first trial sets the bar; the hopeless stop
    assert results["winner"]["hyperparameters"]["learning_rate"] in (1.0, 0.3)


def test_a_run_searched_with_another_pruner_names_the_flag_that_resumes_it(tmp_path: Path) -> None:
    from kmnist_search.base.errors import RunError
    from kmnist_search.data import run_guard
    from kmnist_search.data.rundir import RunDir

    space = load_space("report")
    run = RunDir(tmp_path / "old")
    run.path.mkdir()
    recorded = {"space": space.with_pruning("median").fingerprint(), "strategy": "grid", "seed": 42}
    run_guard.prepare(run, recorded, overwrite=False)
    with pytest.raises(RunError, match="searched with median pruning: pass --prune median to resume it"):
        run_guard.prepare(run, {**recorded, "space": space.fingerprint()}, overwrite=False)
    run_guard.prepare(run, recorded, overwrite=False)  # the same search resumes
    slowing = {**recorded, "space": space.with_pruning("catch-up").fingerprint()}
    slowing["space"] = {**slowing["space"], "pruning": {**slowing["space"]["pruning"], "pace": "slowing"}}
    other = RunDir(tmp_path / "slowing")
    run_guard.prepare(other, slowing, overwrite=False)
    held = {**slowing, "space": space.with_pruning("catch-up").fingerprint()}
    held["space"] = {**held["space"], "pruning": {**held["space"]["pruning"], "pace": "held"}}
    with pytest.raises(RunError, match=r'other catch-up settings \(pace = "slowing"\): put them in the space'):
        run_guard.prepare(other, held, overwrite=False)
    # a catch-up run recorded before the pace was recorded held its pace and judged no trial by its peers,
    # and resumes as such
    old = RunDir(tmp_path / "before-the-pace")
    unpaced = {**held, "space": {**held["space"], "pruning": {
        k: v for k, v in held["space"]["pruning"].items() if k not in ("pace", "peers")}}}
    run_guard.prepare(old, unpaced, overwrite=False)
    without_peers = {**held, "space": {**held["space"], "pruning": {**held["space"]["pruning"], "peers": False}}}
    run_guard.prepare(old, without_peers, overwrite=False)
    with pytest.raises(RunError, match=r'other catch-up settings \(pace = "held", peers = false\)'):
        run_guard.prepare(old, slowing, overwrite=False)
    # one recorded before peers were recorded (its pace slowing) did not judge by them either
    before_peers = RunDir(tmp_path / "before-the-peers")
    unpeered = {**slowing, "space": {**slowing["space"], "pruning": {
        k: v for k, v in slowing["space"]["pruning"].items() if k != "peers"}}}
    run_guard.prepare(before_peers, unpeered, overwrite=False)
    with pytest.raises(RunError, match=r'other catch-up settings \(peers = false\)'):
        run_guard.prepare(before_peers, slowing, overwrite=False)
