"""The `ssdd evaluate` summary (summary.md / summary.json): number formats, the compression column, and
`--report-only` keeping what the run recorded."""

from __future__ import annotations

import json

import yaml

from ssdd.cli import main
from ssdd.evaluation.report import format_table, summarize, with_arch_labels, write_report, write_results
from ssdd.report.formats import mean_std, ratio, seconds, significant


def _rows(seeds: int = 1, distilled_time: float = 2.0) -> list[dict]:
    def row(label, method, seed, top1, pretrain_s, budget=None, **extra):
        return {"label": label, "method": method, "budget": budget, "arch": "a", "target": "t", "mode": "finetune",
                "seed": seed, "top1": top1 + seed, "pretrain_s": pretrain_s, "eval_s": 1.0, **extra}

    rows = []
    for seed in range(seeds):
        rows += [row("full_data", "full_data", seed, 80, 1.02, image_equivalents=50000.0, compression=1.0),
                 row("no_pretrain", "no_pretrain", seed, 40, 0.0),
                 row("boost@100", "boost", seed, 60, distilled_time, 100.0, image_equivalents=99.96, bytes=1228368,
                     compression=500.1758, m=111, views=444)]
    return rows


def test_number_formats():
    assert [significant(v) for v in (0.51, 2.07, 9.96, 20.66, 500.18, 0.0996, 1234.5)] == \
        ["0.51", "2.1", "10", "21", "500", "0.10", "1,234"]
    assert ratio(0.51) == "0.51x" and ratio(20.66) == "21x" and ratio(None) == "-"
    assert mean_std(53.93, 0.0, 1) == "53.93 (n = 1)"
    assert mean_std(57.4533, 0.8571, 3) == "57.45 ± 0.86 (n = 3)"
    assert [seconds(v) for v in (0.38, 8.87, 183.2, 1500, 4 * 3600)] == ["0.38 s", "8.9 s", "183 s", "25.0 min",
                                                                         "4.0 h"]


def test_speedup_below_one_is_not_rounded_to_a_whole_number():
    table = format_table(summarize(_rows(distilled_time=2.0)))  # full data took 1.02 s: speed-up 0.51
    boost = next(line for line in table.splitlines() if line.startswith("| boost@100"))
    assert "| 0.51x |" in boost and "| 1x |" not in boost
    fast = format_table(summarize(_rows(distilled_time=0.0493)))  # 20.7x
    assert "| 21x |" in next(line for line in fast.splitlines() if line.startswith("| boost@100"))


def test_one_seed_prints_n_and_no_zero_std():
    table = format_table(summarize(_rows(seeds=1)))
    assert "± 0.00" not in table and "| 60.00 (n = 1) |" in table
    table = format_table(summarize(_rows(seeds=2)))
    assert "| 60.50 ± 0.71 (n = 2) |" in table


def test_summary_has_a_compression_column():
    header, _, *rows = format_table(summarize(_rows())).splitlines()
    columns = [c.strip() for c in header.strip("|").split("|")]
    at = columns.index("compression")
    values = {r.split("|")[1].strip(): r.strip("|").split("|")[at].strip() for r in rows}
    assert values == {"boost@100": "500x", "no_pretrain": "-", "full_data": "1.0x"}


def test_report_only_keeps_versions_and_config(tmp_path):
    rows = _rows()
    write_results(rows, tmp_path)
    write_report(rows, tmp_path, {"versions": {"torch": "9.9"}, "config": {"seeds": 1}})
    assert main(["evaluate", "--report-only", f"out_dir={tmp_path}"]) == 0
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["versions"] == {"torch": "9.9"} and saved["config"] == {"seeds": 1} and len(saved["rows"]) == 3
    # without a summary.json the config comes back from config.yaml; no versions are made up
    (tmp_path / "summary.json").unlink()
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({"seeds": 7}))
    assert main(["evaluate", "--report-only", f"out_dir={tmp_path}"]) == 0
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["config"] == {"seeds": 7} and "versions" not in saved


def _column(table: str, name: str) -> dict[str, str]:
    header, _, *rows = table.splitlines()
    at = [c.strip() for c in header.strip("|").split("|")].index(name)
    return {r.split("|")[1].strip(): r.strip("|").split("|")[at].strip() for r in rows}


def test_gap_closed_is_the_share_of_the_distance_from_no_pretraining_to_the_retention_row(tmp_path):
    rows = _rows(seeds=3)
    rows += [{**r, "label": "full_data_same_recipe", "method": "full_data_same_recipe", "top1": r["top1"] - 10}
             for r in rows if r["label"] == "full_data"]  # the denominator when present: 70 + seed
    write_report(rows, tmp_path)

    def mean(label):
        values = [r["top1"] for r in rows if r["label"] == label]
        return sum(values) / len(values)

    none, full = mean("no_pretrain"), mean("full_data_same_recipe")
    saved = {s["label"]: s for s in json.loads((tmp_path / "summary.json").read_text())["rows"]}
    for label in ("boost@100", "no_pretrain", "full_data", "full_data_same_recipe"):
        expected = (mean(label) - none) / (full - none)
        assert abs(saved[label]["gap_closed"] - expected) < 1e-12, label
        assert saved[label]["retention_of"] == "full_data_same_recipe"
    assert abs(saved["boost@100"]["gap_closed"] - 2 / 3) < 1e-12  # 61 vs 41 and 71
    shown = _column((tmp_path / "summary.md").read_text(), "gap closed")
    assert shown["boost@100"] == "0.67" and shown["no_pretrain"] == "0.00" and shown["full_data"] == "1.33"
    # no no-pretraining row: no gap to measure
    alone = summarize([r for r in rows if r["label"] != "no_pretrain"])
    assert {s["gap_closed"] for s in alone} == {None}


def test_samples_seen_are_shown_and_derived_for_old_rows_only_where_the_config_makes_them_exact(tmp_path):
    from ssdd.evaluation.config import PretrainConfig
    from ssdd.evaluation.pretrain import pretrain_samples, pretrain_steps

    pretrain = PretrainConfig(epochs=1000, batch_size=256, max_iterations=1000)
    counted = pretrain_samples(444, pretrain)
    rows = [{**r, "pretrain_steps": 1000 if r["label"] == "boost@100" else 0} for r in _rows()]
    new = [{**r, "pretrain_samples": counted if r["label"] == "boost@100" else 0} for r in rows]
    assert _column(format_table(summarize(new)), "samples seen")["boost@100"] == f"{counted:,}"
    # rows recorded before the field: unknown without the config, derived with it, unknown with another config
    assert _column(format_table(summarize(rows)), "samples seen") == {"boost@100": "-", "no_pretrain": "0",
                                                                      "full_data": "-"}
    config = {"pretrain": {"epochs": 1000, "batch_size": 256, "max_iterations": 1000}}
    assert pretrain_steps(444, pretrain) == 1000  # the config reproduces the steps the row recorded
    derived = {s["label"]: s["pretrain_samples"] for s in summarize(rows, config)}
    assert derived["boost@100"] == counted == 500 * 444  # batches of 256 and 188: 2 steps and 444 pairs an epoch
    other = {"pretrain": {"epochs": 1000, "batch_size": 128, "max_iterations": 0}}
    assert {s["label"]: s["pretrain_samples"] for s in summarize(rows, other)}["boost@100"] is None
    # `--report-only` on such old results takes the config from config.yaml
    write_results(rows, tmp_path)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert main(["evaluate", "--report-only", f"out_dir={tmp_path}"]) == 0
    saved = {s["label"]: s for s in json.loads((tmp_path / "summary.json").read_text())["rows"]}
    assert saved["boost@100"]["pretrain_samples"] == counted


def test_two_widths_of_one_network_are_two_networks_not_two_seeds():
    rows = []
    for width, top1 in ((8, 50.0), (16, 70.0)):
        rows += [{**row, "arch_width": width, "arch_depth": 3, "top1": top1} for row in _rows(seeds=1)]
    summary = summarize(rows)
    boost = {s["arch"]: s for s in summary if s["label"] == "boost@100"}
    assert sorted(boost) == ["a-w16", "a-w8"]
    assert [boost["a-w8"]["seeds"], boost["a-w8"]["top1_mean"], boost["a-w16"]["top1_mean"]] == [1, 50.0, 70.0]
    assert all(s["retention"] == 1.0 for s in summary)  # each against the full-data row of its own width


def test_a_setting_an_older_row_did_not_record_tells_no_network_apart():
    rows = _rows(seeds=2)
    rows[0]["arch_depth"], rows[1]["arch_depth"] = None, 3  # a row written before the depth was recorded
    assert {s["arch"] for s in summarize(rows)} == {"a"}
    assert with_arch_labels(rows)[1] is rows[1]  # nothing to tell apart: the rows come back as they are
