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
