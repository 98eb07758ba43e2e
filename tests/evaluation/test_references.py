"""Which full-data row retention (and the pre-training speed-up) divides by, in the summary."""

from __future__ import annotations

import pytest

from ssdd.evaluation.references import retention_reference
from ssdd.evaluation.report import format_table, summarize, write_report


def row(label: str, seed: int, top1: float, pretrain_s: float, budget: float | None = None, **extra) -> dict:
    method = label.split("@")[0]
    return {"label": label, "method": method, "budget": budget, "arch": "a", "target": "t", "mode": "finetune",
            "seed": seed, "top1": top1, "pretrain_s": pretrain_s, "eval_s": 1.0, **extra}


def old_rows() -> list[dict]:
    """Rows as evaluations wrote them before the same-recipe row (no steps, no fine-tuning iterations)."""
    return [row("full_data", s, 80, 10.0) for s in (0, 1)] + [row("no_pretrain", s, 40, 0.0) for s in (0, 1)] + \
        [row("krr_st@100", s, 54, 2.0, 100.0) for s in (0, 1)]


def test_the_same_recipe_row_is_preferred():
    assert retention_reference(["krr_st@100", "full_data", "full_data_same_recipe"]) == "full_data_same_recipe"
    assert retention_reference(["krr_st@100", "full_data"]) == "full_data"
    assert retention_reference(["krr_st@100", "no_pretrain"]) is None


def test_retention_and_speedup_divide_by_the_same_recipe_row_when_present():
    rows = old_rows() + [row("full_data_same_recipe", s, 60, 4.0, pretrain_steps=1000, finetune_iterations=300)
                         for s in (0, 1)]
    by_label = {s["label"]: s for s in summarize(rows)}
    assert by_label["krr_st@100"]["retention"] == pytest.approx(54 / 60)
    assert by_label["krr_st@100"]["retention_of"] == "full_data_same_recipe"
    assert by_label["krr_st@100"]["pretrain_speedup"] == pytest.approx(4.0 / 2.0)
    assert by_label["full_data"]["retention"] == pytest.approx(80 / 60)  # the tuned row, against it
    assert by_label["full_data_same_recipe"]["retention"] == pytest.approx(1.0)
    assert by_label["full_data_same_recipe"]["pretrain_steps"] == 1000
    assert by_label["full_data"]["pretrain_speedup"] is None and by_label["full_data_same_recipe"]["pretrain_speedup"] \
        is None
    # the references come after the sets: no pre-training, then the two full-data rows
    assert [s["label"] for s in summarize(rows)] == ["krr_st@100", "no_pretrain", "full_data_same_recipe",
                                                     "full_data"]


def test_old_rows_still_summarise_against_the_tuned_row(tmp_path):
    summary = summarize(old_rows())
    krr = next(s for s in summary if s["label"] == "krr_st@100")
    assert krr["retention"] == pytest.approx(54 / 80) and krr["retention_of"] == "full_data"
    assert krr["pretrain_speedup"] == pytest.approx(5.0) and krr["pretrain_steps"] is None
    table = format_table(summary)
    assert "| krr_st@100 |" in table and "| 0.68 |" in table
    write_report(old_rows(), tmp_path)
    assert (tmp_path / "summary.md").is_file() and (tmp_path / "results.png").is_file()


def test_one_denominator_for_the_whole_evaluation_even_where_a_panel_lacks_it():
    """Mid-run, architecture b may have its tuned full-data row and not yet its same-recipe row: its panel gets
    no retention rather than one against another row than the report names."""
    rows = old_rows() + [row("full_data_same_recipe", s, 60, 4.0) for s in (0, 1)]
    rows += [{**r, "arch": "b"} for r in old_rows()]
    by_panel = {(s["label"], s["arch"]): s for s in summarize(rows)}
    assert by_panel[("krr_st@100", "a")]["retention"] == pytest.approx(54 / 60)
    assert by_panel[("krr_st@100", "b")]["retention"] is None
    assert {s["retention_of"] for s in by_panel.values()} == {"full_data_same_recipe"}
