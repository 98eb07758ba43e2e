"""Gap closed as summaries show it: a share of a distance within noise (full data vs no pre-training) is shown as
n/a, in summary.md and in `ssdd report`'s tables, while summary.json keeps the number."""

from __future__ import annotations

import json

from ssdd.evaluation.gap import NOISE_FLOOR, WITHIN_NOISE, gap_closed, shown_gap_closed, within_noise
from ssdd.evaluation.report import summarize, write_report
from ssdd.report.content import full_table_row
from ssdd.report.formats import fixed


def rows(full: list[float], none: list[float], boost: list[float]) -> list[dict]:
    """One finetune panel, one row per seed of each label."""
    def row(label: str, method: str, seed: int, top1: float) -> dict:
        return {"label": label, "method": method, "budget": 100.0 if method == "boost" else None, "arch": "a",
                "target": "t", "mode": "finetune", "seed": seed, "top1": top1, "pretrain_s": 1.0, "eval_s": 1.0}

    return [row(label, method, seed, top1) for label, method, values in
            (("full_data", "full_data", full), ("no_pretrain", "no_pretrain", none), ("boost@100", "boost", boost))
            for seed, top1 in enumerate(values)]


def test_within_noise_compares_the_distance_with_the_seeds_spread_and_a_floor():
    def s(mean: float, std: float) -> dict:
        return {"top1_mean": mean, "top1_std": std}

    assert within_noise(s(40, 2.0), s(41.5, 0.1))  # 1.5 points apart, seeds spread 2 points
    assert within_noise(s(40, 0.0), s(40 + NOISE_FLOOR / 2, 0.0))  # one seed: the floor alone
    assert not within_noise(s(40, 0.3), s(45, 0.2))
    assert not within_noise(s(40, 0.0), s(40 + 2 * NOISE_FLOOR, 0.0))


def test_the_summary_shows_na_where_full_data_is_within_noise_and_keeps_the_number(tmp_path):
    noisy = rows(full=[40.5, 42.5, 41.5], none=[42.0, 40.0, 41.0], boost=[46.0, 44.0, 45.0])  # 0.5 apart, std 1
    write_report(noisy, tmp_path)
    saved = {s["label"]: s for s in json.loads((tmp_path / "summary.json").read_text())["rows"]}
    assert saved["boost@100"]["gap_closed"] == gap_closed(45.0, 41.0, 41.5) == 8.0  # stored as computed
    table = (tmp_path / "summary.md").read_text()
    boost = next(line for line in table.splitlines() if line.startswith("| boost@100"))
    assert f"| {WITHIN_NOISE} |" in boost and "| 8.00 |" not in boost
    clear = summarize(rows(full=[70.0, 71.0], none=[40.0, 41.0], boost=[60.0, 61.0]))
    boost_row = next(s for s in clear if s["label"] == "boost@100")
    assert shown_gap_closed(boost_row, clear, fixed) == "0.67"


def test_the_report_full_table_shows_na_too():
    summary = summarize(rows(full=[41.0, 43.0], none=[42.0, 40.0], boost=[46.0, 44.0]))  # 1 apart, std 1.4
    boost = next(s for s in summary if s["label"] == "boost@100")
    assert WITHIN_NOISE in full_table_row(boost, None, summary)
    assert WITHIN_NOISE not in full_table_row(boost)  # no panel given: the number, as before
