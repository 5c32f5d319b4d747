"""Every figure a document quotes from a benchmark is rendered from that benchmark's record: a section
that says anything else fails here."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from records import read_record, section, write_into  # noqa: E402
from replay_pruners import DOC, RECORD, render_table  # noqa: E402


def test_the_pruning_tables_are_rendered_from_the_replay_record() -> None:
    results = read_record(RECORD)["results"]
    assert results, f"{RECORD} holds no replayed ground truth"
    for result in results:
        assert section(DOC, f"replay:{result['space']}") == render_table(result)


def test_the_held_out_workload_s_section_is_rendered_from_the_replay_record() -> None:
    from replay_pruners import render_held_out

    assert section(DOC, "replay:held-out") == render_held_out(read_record(RECORD).get("held_out"))


def test_the_held_out_section_names_the_rules_that_held_everywhere() -> None:
    from replay_pruners import MAIN_RULES, render_held_out

    assert "once all its configurations are recorded" in render_held_out(None)

    def row(workload: str, pruner: str, held: float, in_order: float) -> dict[str, object]:
        return {"workload": workload, "configurations": 40, "pruner": pruner, "epochs_fraction": 0.3,
                "regret_points": 0.1, "worst_regret_points": 0.2, "run_regret_points": 0.1,
                "within_unseen_bounds": held, "within_unseen_bounds_space_order": in_order, "replays": 6}

    first, second = MAIN_RULES[0], MAIN_RULES[-1]
    text = render_held_out({"space": "report-10k", "seed": 5042, "train_images": 10000, "replays": 24,
                            "replay_wall_seconds": 3.2, "replay_cpu_seconds": 3.0,
                            "workloads": [row("12 epochs, the whole grid", first, 1.0, 1.0),
                                          row("12 epochs, the whole grid", second, 0.5, 1.0),
                                          row("4 epochs", first, 1.0, 0.0), row("4 epochs", second, 1.0, 1.0)]})
    assert "a stratified subset of 10,000 training images, trained once at seed 5042" in text
    assert "| 4 epochs | 40 | " + second + " | 0.30x | 0.10 | 0.20 | 0.10 | 100% | 100% | 6 |" in text
    assert text.endswith(f"Held on every workload in every search: {first}.\n\n"
                         f"Held on every workload in every search in the space's order: {second}.")


def test_the_frontier_keeps_only_the_rules_nothing_beats_on_both_cost_and_regret() -> None:
    from replay_pruners import frontier

    rows = [{"pruner": name, "cpu_fraction": cost, "regret_points": regret}
            for name, cost, regret in (("none", 1.0, 0.2), ("a", 0.2, 0.5), ("b", 0.3, 0.1), ("c", 0.4, 0.1),
                                       ("d", 0.25, 0.6), ("e", 0.5, 0.0))]
    assert [row["pruner"] for row in frontier(rows)] == ["a", "b", "e"]


def test_the_pruning_page_s_reading_of_the_grid_orders_holds_on_the_record() -> None:
    """docs/pruning.md: the space's order is the cheap case for every rule; on `report` the median and
    successive-halving rules lose more there than in shuffled orders."""
    for result in read_record(RECORD)["results"]:
        rows = {(row["strategy"], row["pruner"]): row for row in result["table"]}
        rules = [p for s, p in rows if s == "grid (shuffled)" and p != "none"]
        for rule in rules:
            assert rows[("grid (space order)", rule)]["epochs_fraction"] <= rows[("grid (shuffled)", rule)][
                "epochs_fraction"], (result["space"], rule)
        if result["space"] == "report":
            for rule in ("median (warm-up 1)", "ASHA (1, 3)"):
                assert rows[("grid (space order)", rule)]["regret_points"] > rows[("grid (shuffled)", rule)][
                    "regret_points"], rule


def test_a_section_that_drifts_from_its_record_is_caught(tmp_path: Path) -> None:
    document = tmp_path / "doc.md"
    document.write_text("before\n<!-- figures:start -->\nold 1.23x\n<!-- figures:end -->\nafter\n")
    write_into(document, "figures", "new 0.98x\nsecond line")
    assert section(document, "figures") == "new 0.98x\nsecond line"
    assert document.read_text().startswith("before\n") and document.read_text().endswith("\nafter\n")
    with pytest.raises(ValueError, match="has no <!-- other:start -->"):
        section(document, "other")
    document.write_text("<!-- new:start -->\n<!-- new:end -->\n")  # a section not yet written
    assert section(document, "new") == ""
    write_into(document, "new", "first")
    assert document.read_text() == "<!-- new:start -->\nfirst\n<!-- new:end -->\n"


def test_the_determinism_figures_are_rendered_from_their_record() -> None:
    from deterministic_cost import DOCUMENT, MARKER, RECORD, render

    assert section(DOCUMENT, MARKER) == render(read_record(RECORD))


@pytest.mark.parametrize("script", ["residual_epoch_cost", "trial_vs_plain_fit", "resumable_batches",
                                    "distributed_workers", "tta_shifts", "suite_time"])
def test_a_benchmark_s_section_is_rendered_from_its_record(script: str) -> None:
    import importlib

    module = importlib.import_module(script)
    assert section(module.DOCUMENT, module.MARKER) == module.render(read_record(module.RECORD))


def test_the_shipped_model_s_section_is_rendered_from_its_card_and_evaluation() -> None:
    import json

    from shipped_model import CARD, DOCUMENT, EVALUATION, MARKER, render

    evaluation = json.loads(EVALUATION.read_text(encoding="utf-8"))
    assert section(DOCUMENT, MARKER) == render(json.loads(CARD.read_text(encoding="utf-8")), evaluation)
    assert evaluation["onnx_bytes"] == (CARD.parent / "kmnist-reference.onnx").stat().st_size


def test_the_code_shape_figures_are_rendered_from_their_record_and_measure_their_commits() -> None:
    import subprocess

    from code_shape import DOCUMENT, MARKER, RECORD, ROOT, measure, render

    record = read_record(RECORD)
    assert section(DOCUMENT, MARKER) == render(record)
    for moment in ("before", "after"):
        commit = record[moment]["commit"]
        if subprocess.run(["git", "cat-file", "-e", f"{commit}^{{commit}}"], cwd=ROOT,
                          capture_output=True).returncode:
            pytest.skip(f"commit {commit} is not in this clone's history (a shallow clone)")
        assert measure(commit) == record[moment], f"rerun python benchmarks/code_shape.py ({moment})"


def test_the_deployment_figures_are_rendered_from_their_record_once_measured() -> None:
    from deployment_budget import DOCUMENT, RECORD, render

    if RECORD.is_file():
        assert section(DOCUMENT, "deployment") == render(read_record(RECORD))
    else:
        assert section(DOCUMENT, "deployment").startswith("Not measured yet")


def test_the_default_pruner_verdict_is_rendered_from_the_replay_record() -> None:
    from replay_pruners import verdict

    assert section(DOC, "replay:verdict") == verdict(read_record(RECORD)["results"])


def test_the_verdict_names_only_rules_within_both_bounds_on_both_ground_truths() -> None:
    from replay_pruners import verdict

    def result(space: str, sd: float, rows: list[tuple[str, float, float]]) -> dict[str, object]:
        return {"space": space, "true_best_seed_sd_points": sd, "trainings_recorded": 50, "trainings_planned": 120,
                "trainings_settling_best": 50,
                "table": [{"strategy": "grid (shuffled)", "pruner": name, "regret_points": regret,
                           "cpu_fraction": cost} for name, regret, cost in rows],
                "workloads": [{"pruner": "rule a", "within_unseen_bounds": 0.5},
                              {"pruner": "rule a", "within_unseen_bounds": 1.0}]}

    results = [result("report-small", 0.5, [("none", 0.2, 1.0), ("rule a", 0.4, 0.30), ("rule b", 0.1, 0.20)]),
               result("report", 0.1, [("none", 0.0, 1.0), ("rule a", 0.05, 0.34), ("rule b", 0.3, 0.20)])]
    assert verdict(results) == ("Within both bounds on both ground truths (cheapest first): rule a (0.32x the CPU "
                                "seconds, held on 75% of the workload searches). The default: rule a.")
    assert verdict(results[:1]).startswith("Which rule may be the default is decided on both ground truths")
    unfinished = [results[0], {**results[1], "trainings_recorded": 47}]
    assert verdict(unfinished) == ("Which configuration is the true best, and so the regret bound (its seed sd), is "
                                   "settled once the ground truth is complete; recorded so far: `report` 47 of 50 "
                                   "trainings. The verdict waits for benchmarks/ground_truth.py.")
    results[1]["table"][1]["regret_points"] = 0.2  # type: ignore[index]
    assert verdict(results) == ("No rule is within both bounds on both ground truths. Adding no regret to the "
                                "unpruned grid's on both, cheapest first (CPU seconds on `report-small` and "
                                "`report`): no rule. No rule qualifies: the default stays as it is.")
    results[1]["table"][1]["regret_points"] = 0.05  # type: ignore[index]
    results[1]["table"][1]["cpu_fraction"] = 0.5  # type: ignore[index]
    assert verdict(results).endswith("Within the regret bound on both, cheapest first (CPU seconds on "
                                     "`report-small` and `report`): rule a at 0.30x and 0.50x. Adding no regret to "
                                     "the unpruned grid's on both, cheapest first (CPU seconds on `report-small` and "
                                     "`report`): no rule. The default: rule a.")


def test_when_the_seed_noise_exceeds_the_bound_the_verdict_says_so_and_takes_the_rule_adding_no_regret() -> None:
    from replay_pruners import default_rule, verdict

    def result(space: str, sd: float, rows: list[tuple[str, float, float]]) -> dict[str, object]:
        return {"space": space, "true_best_seed_sd_points": sd, "trainings_recorded": 1, "trainings_planned": 1,
                "trainings_settling_best": 1,
                "table": [{"strategy": "grid (shuffled)", "pruner": name, "regret_points": regret,
                           "cpu_fraction": cost} for name, regret, cost in rows]}

    results = [result("report-small", 0.5, [("none", 0.2, 1.0), ("rule a", 0.2, 0.40), ("rule b", 0.1, 0.30)]),
               result("report", 0.1, [("none", 0.15, 1.0), ("rule a", 0.15, 0.38), ("rule b", 0.3, 0.20)])]
    text = verdict(results)
    assert ("Even the unpruned grid's regret is above the true best's seed sd on `report` (0.15 against 0.10 "
            "points)") in text
    assert text.endswith("`report`): rule a at 0.40x and 0.38x. The default: rule a.")
    assert default_rule(results) == "rule a"


def test_the_package_s_default_pruner_is_the_one_the_verdict_names_once_the_ground_truth_is_complete() -> None:
    from replay_pruners import default_rule, rules, waiting

    from kmnist_search.data.spaces import Pruning

    results = read_record(RECORD)["results"]
    rule = default_rule(results)
    assert (rule is None) == bool(waiting(results))
    if rule is not None:
        assert Pruning() == rules()[rule], f"the replay's verdict names {rule}: make its settings Pruning's defaults"


def test_the_accuracy_table_is_rendered_from_the_card_and_the_ground_truth() -> None:
    from accuracy_table import DOCUMENT, MARKER, render, rows_from_records

    rows = rows_from_records()
    assert section(DOCUMENT, MARKER) == render(rows)
    assert rows[0][3] * 100 == pytest.approx(98.67) and rows[1][3] > rows[0][3]  # the card's int8 and float32


def test_the_accuracy_table_s_gap_sentence_is_computed_from_its_rows() -> None:
    from accuracy_table import render

    text = render([("a", "r", 0.99, 0.98), ("b", "r", 0.97, 0.91)])
    assert "Validation runs 1.0 to 6.0 points above test" in text and "| b | r | 97.00% | 91.00% |" in text


def test_the_study_page_is_rendered_from_the_ground_truth_once_the_grid_is_recorded() -> None:
    from ground_truth import OUT_DIR, read_csv
    from study_truth import DOCUMENT, MARKER, PRUNED_SEARCH, SETTINGS, ground_truth, pruned_search, render

    truth = ground_truth(read_csv(OUT_DIR / "report.csv"), read_csv(OUT_DIR / "units.csv"), 40)
    if truth is None:
        assert section(DOCUMENT, MARKER).startswith("Written by `python benchmarks/study_truth.py`")
    else:
        with PRUNED_SEARCH.open(newline="", encoding="utf-8") as file:
            searched = pruned_search(list(csv.DictReader(file)))
        assert section(DOCUMENT, MARKER) == render(truth, searched, SETTINGS)


def test_the_study_page_names_the_true_best_and_where_the_declared_winner_ranks() -> None:
    from study_truth import Configuration, PrunedTrial, ground_truth, render

    def epochs(lr: float, batch: int, seed: int, final: float) -> list[dict[str, str]]:
        return [{"space": "report", "repeat": "0", "learning_rate": str(lr), "batch_size": str(batch),
                 "loss": "categorical_crossentropy", "seed": str(seed), "epoch": str(e),
                 "val_accuracy": str(final - (12 - e) * 0.01)} for e in range(1, 13)]

    rows = epochs(0.1, 128, 42, 0.97) + epochs(0.1, 16, 42, 0.965) + epochs(0.1, 128, 1042, 0.95)
    units = [{"space": "report", "repeat": "0", "learning_rate": lr, "batch_size": b,
              "loss": "categorical_crossentropy", "seed": "42", "test_accuracy_at_best_epoch": "0.9"}
             for lr, b in (("0.1", "128"), ("0.1", "16"))]
    assert ground_truth(rows[:12], units, 2) is None  # one configuration of two: no ranking yet
    truth = ground_truth(rows, units, 2)
    assert truth is not None
    large, small = (Configuration(0.1, batch, "categorical_crossentropy") for batch in (128, 16))
    assert truth[large].finals == (0.97, 0.95) and truth[large].mean == pytest.approx(0.96)
    searched = {large: PrunedTrial(2, 2, 0.87, False), small: PrunedTrial(1, 12, 0.96, True)}
    text = render(truth, searched, {})
    assert "**The true best**: lr 0.1, batch 16, cross-entropy, 96.50%." in text  # above the mean of two seeds
    assert "declared** lr 0.1, batch 16, cross-entropy (trial 1): it ranks 1 of 2 here, 0.00 points below" in text
    assert "1 of the 5 best configurations (lr 0.1, batch 128, cross-entropy at epoch 2, 87.00%)" in text


def test_the_seed_replicates_train_the_best_configuration_first() -> None:
    """The best configuration's seed spread (the replay's regret bound) lands before the others' replicates."""
    from ground_truth import seed_units

    from kmnist_search.data.spaces import load_space

    configurations = load_space("report").configurations()
    units = list(seed_units("report", (1042, 2042), [configurations[7], configurations[3]]))
    assert [(unit.index, unit.seed, unit.weights_seed) for unit in units] == [
        (7, 1042, 1049), (7, 2042, 2049), (3, 1042, 1045), (3, 2042, 2045)]


def test_each_further_seed_s_whole_grid_lands_before_the_next_seed_s() -> None:
    """The replay can use a seed's curves only once every configuration has trained at it."""
    from ground_truth import seed_grids

    from kmnist_search.data.spaces import load_space

    configurations = load_space("report").configurations()
    units = list(seed_grids("report", (1042, 2042), [configurations[7], configurations[3]]))
    assert [(unit.index, unit.seed, unit.weights_seed) for unit in units] == [
        (7, 1042, 1049), (3, 1042, 1045), (7, 2042, 2049), (3, 2042, 2045)]


def test_the_held_out_workload_is_the_report_grid_on_another_subset_trained_between_the_further_seeds() -> None:
    from ground_truth import HELD_OUT_SEED, HELD_OUT_SPACE, OUT_DIR, SEEDS, STAGES, space_named, stage_units

    from kmnist_search.data.spaces import load_space

    held_out, report = space_named(HELD_OUT_SPACE), load_space("report")
    assert held_out.configurations() == report.configurations() and held_out.epochs == report.epochs
    assert held_out.train_images == 10_000 and held_out.validation_images == report.validation_images
    stages = [list(stage_units(stage, OUT_DIR)) for stage in range(STAGES)]
    assert {unit.space for unit in stages[5]} == {HELD_OUT_SPACE}
    assert [unit.weights_seed for unit in stages[5]] == [HELD_OUT_SEED + i for i in range(40)]
    assert HELD_OUT_SEED not in SEEDS
    assert {unit.seed for unit in stages[4]} == {SEEDS[1]} and {unit.seed for unit in stages[6]} == {SEEDS[2]}


def test_the_study_page_s_findings_are_computed_from_the_grid() -> None:
    from study_truth import Configuration, Truth, findings, grid_table

    finals = {(0.1, 8, "categorical_crossentropy"): 0.96, (0.1, 128, "categorical_crossentropy"): 0.97,
              (0.1, 8, "mean_squared_error"): 0.97, (0.1, 128, "mean_squared_error"): 0.90,
              (0.01, 8, "categorical_crossentropy"): 0.90, (0.01, 128, "categorical_crossentropy"): 0.80,
              (0.01, 8, "mean_squared_error"): 0.70, (0.01, 128, "mean_squared_error"): 0.60}
    truth = {Configuration(*key): Truth(Configuration(*key), (value,), (value,) * 12, ()) for key, value in
             finals.items()}
    text = "\n".join(findings(truth))
    assert "spans 20.00 points across learning rates, 11.50 points across losses, 6.50 points across batch" in text
    assert "average 95.00% at 0.1, 75.00% at 0.01, in the order of the rates." in text
    assert "ahead of squared error in 3 of the 4 pairs" in text and "by 3.00 points at lr 0.1, 20.00 points" in text
    assert "with cross-entropy, at each learning rate: 0.1: best at batch 128, a 1.00-point spread; 0.01: best at " \
           "batch 8, a 10.00-point spread (the smallest batch)." in text
    assert grid_table(truth)[2] == "| 0.1 | cross-entropy | 96.00% | 97.00% |"
