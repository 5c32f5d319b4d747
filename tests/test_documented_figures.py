"""Every figure a document quotes from a benchmark is rendered from that benchmark's record: a section
that says anything else fails here."""

from __future__ import annotations

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


def test_a_section_that_drifts_from_its_record_is_caught(tmp_path: Path) -> None:
    document = tmp_path / "doc.md"
    document.write_text("before\n<!-- figures:start -->\nold 1.23x\n<!-- figures:end -->\nafter\n")
    write_into(document, "figures", "new 0.98x\nsecond line")
    assert section(document, "figures") == "new 0.98x\nsecond line"
    assert document.read_text().startswith("before\n") and document.read_text().endswith("\nafter\n")
    with pytest.raises(ValueError, match="has no <!-- other:start -->"):
        section(document, "other")


def test_the_determinism_figures_are_rendered_from_their_record() -> None:
    from deterministic_cost import DOCUMENT, MARKER, RECORD, render

    assert section(DOCUMENT, MARKER) == render(read_record(RECORD))


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
        return {"space": space, "true_best_seed_sd_points": sd,
                "table": [{"strategy": "grid (shuffled)", "pruner": name, "regret_points": regret,
                           "cpu_fraction": cost} for name, regret, cost in rows],
                "workloads": [{"pruner": "rule a", "within_unseen_bounds": 0.5},
                              {"pruner": "rule a", "within_unseen_bounds": 1.0}]}

    results = [result("report-small", 0.5, [("none", 0.2, 1.0), ("rule a", 0.4, 0.30), ("rule b", 0.1, 0.20)]),
               result("report", 0.1, [("none", 0.0, 1.0), ("rule a", 0.05, 0.34), ("rule b", 0.3, 0.20)])]
    assert verdict(results) == ("Within both bounds on both ground truths (cheapest first): rule a (0.32x the CPU "
                                "seconds, held on 75% of the workload searches).")
    assert verdict(results[:1]).startswith("Which rule may be the default is decided on both ground truths")
    results[1]["table"][1]["regret_points"] = 0.2  # type: ignore[index]
    assert verdict(results).startswith("No rule keeps the regret within the true best's seed sd on both")
    results[1]["table"][1]["regret_points"] = 0.05  # type: ignore[index]
    results[1]["table"][1]["cpu_fraction"] = 0.5  # type: ignore[index]
    assert verdict(results) == ("No rule is within both bounds on both ground truths. Within the regret bound on "
                                "both, cheapest first (CPU seconds on `report-small` and `report`): rule a (0.30x "
                                "and 0.50x).")
