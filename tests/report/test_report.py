"""`ssdd report` on a small real evaluation: every number of its table recomputed from results.json, the
cards' numbers from the manifests, a self-contained HTML page, missing folders named, and the CLI."""

from __future__ import annotations

import json
import re
import shutil
import statistics
import subprocess
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import make_npz, make_teacher
from ssdd.cli import main
from ssdd.config import load_config
from ssdd.distill.config import DistillConfig
from ssdd.distill.run import run_distill
from ssdd.evaluation.config import EvaluateConfig
from ssdd.evaluation.gap import NOISE_FLOOR, WITHIN_NOISE
from ssdd.evaluation.protocol import run_evaluate, source_label
from ssdd.report import build_report
from ssdd.report.content import FULL_TABLE_HEADER, REFERENCE_NAMES
from ssdd.report.gather import gather

DISTILL = ["data.resolution=16", "outer.steps=6", "outer.batch_size=16", "outer.lr=0.01", "pool.size=2",
           "pool.max_steps=5", "outer.model.width=4", "outer.model.depth=2", "device=cpu", "log_every=2",
           "checkpoint_every=100", "boost.image_bases=8", "boost.image_resolution=8", "boost.target_bases=4",
           "boost.approx_steps=20"]
FULL_ROWS = ("full_data_same_recipe", "full_data")  # the retention denominator first
SETS = {"boost_3": ["method=boost", "budget=3"], "random_3": ["method=random", "budget=3"],
        "random_10": ["method=random", "budget=10"], "krr_st_10": ["method=krr_st", "budget=10"]}


@pytest.fixture(scope="module")
def evaluation(tmp_path_factory: pytest.TempPathFactory, one_thread: None) -> dict[str, Path]:
    """Four distilled sets (Boost, KRR-ST, random at two budgets) evaluated with 2 seeds on tiny data."""
    root = tmp_path_factory.mktemp("report")
    npz = make_npz(root / "tiny.npz")
    teacher = make_teacher(root / "teacher_run" / "teacher")
    (root / "teacher_run" / "history.json").write_text(json.dumps(
        [{"epoch": e, "loss": 10.0 / e, "monitor_top1": 5.0 * e, "images_per_s": 100.0} for e in (1, 2, 3)]))
    for name, extra in SETS.items():
        run_distill(load_config(DistillConfig, None, [f"data.path={npz}", f"teacher={teacher}",
                                                      f"out_dir={root / name}", *DISTILL, *extra]),
                    show_progress=False)
    out = root / "eval"
    cfg = load_config(EvaluateConfig, None, [
        f"teacher={teacher}", f"out_dir={out}", f"source.path={npz}", "seeds=2", "device=cpu",
        f"distilled=[{', '.join(str(root / name) for name in SETS)}]",
        "models=[{name: convnet, width: 4, depth: 2}]", f"targets=[{{source: npz, path: {npz}, name: tiny}}]",
        "pretrain.epochs=2", "full_data.epochs=1", "full_data.batch_size=16", "finetune.small_iterations=3",
        "probe.iterations=5", "cka_images=16"])
    run_evaluate(cfg, show_progress=False)
    return {"root": root, "eval": out, "teacher": teacher}


@pytest.fixture(scope="module")
def report(evaluation: dict[str, Path]) -> tuple[Path, Path]:
    return build_report(evaluation["eval"], evaluation["root"] / "report")


# ---------------------------------------------------------------- recomputing the table from results.json


def _number(text: str) -> tuple[float, float]:
    """A printed number and half a unit of its last digit (the rounding it may carry)."""
    text = text.replace(",", "")
    decimals = len(text.split(".")[1]) if "." in text else 0
    return float(text), 0.5 * 10 ** -decimals + 1e-9


def _seconds(text: str) -> tuple[float, float]:
    value, unit = text.split()
    number, tolerance = _number(value)
    scale = {"s": 1, "min": 60, "h": 3600}[unit]
    return number * scale, tolerance * scale


def expected_table(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, dict[str, Any]]]:
    """Every value of the full table, straight from results.json (no ssdd code involved)."""
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["label"], r["arch"], r["target"], r["mode"])].append(r)
    mean = {k: statistics.fmean(r["top1"] for r in v) for k, v in groups.items()}
    std = {k: statistics.stdev(r["top1"] for r in v) if len(v) > 1 else 0.0 for k, v in groups.items()}
    full_time = {(r["label"], r["arch"], r["seed"]): r["pretrain_s"] for r in rows if r["label"] in FULL_ROWS}
    table: dict[tuple[str, str, str], dict[str, dict[str, Any]]] = defaultdict(dict)
    for (label, arch, target, mode), members in groups.items():
        first, key = members[0], (arch, target, mode)
        top1 = [r["top1"] for r in members]
        # retention divides by the row with the distilled rows' recipe when there is one
        denominator = next(full for full in FULL_ROWS if (full, *key) in mean)
        full, none = mean[(denominator, *key)], mean.get(("no_pretrain", *key))
        random = mean.get((f"random@{first['budget']:g}", *key)) if first["budget"] is not None else None
        reference = label in ("no_pretrain", *FULL_ROWS)
        table[key][label] = {
            "n": len(top1), "mean": statistics.fmean(top1), "std": statistics.stdev(top1) if len(top1) > 1 else None,
            "retention": statistics.fmean(top1) / full,
            "gap closed": None if full <= none else WITHIN_NOISE if full - none < max(
                std[(denominator, *key)], std[("no_pretrain", *key)], NOISE_FLOOR)
            else (statistics.fmean(top1) - none) / (full - none),
            "vs no pre-training": None if label == "no_pretrain" else statistics.fmean(top1) - none,
            "vs random": None if random is None or label.startswith("random@") else statistics.fmean(top1) - random,
            "storage (img-eq)": first.get("image_equivalents"),
            "KiB": first["bytes"] / 1024 if first.get("bytes") else None,
            "compression": first.get("compression"), "m": first.get("m"), "pairs": first.get("views"),
            "CKA to teacher": statistics.fmean(r["cka_to_teacher"] for r in members),
            "pre-training time": None if label == "no_pretrain" else statistics.fmean(r["pretrain_s"] for r in members),
            "pre-training steps": None if label == "no_pretrain" else first.get("pretrain_steps"),
            "samples seen": None if label == "no_pretrain" else first.get("pretrain_samples"),
            "speed-up": None if reference else statistics.fmean(full_time[(denominator, r["arch"], r["seed"])] /
                                                                r["pretrain_s"] for r in members),
            "distillation time": None if reference else first.get("distill_s"),
            "distillation steps": None if reference else first.get("distill_steps"),
        }
    return table


def markdown_tables(text: str) -> dict[str, list[list[str]]]:
    """Tables of report.md that follow an italic caption, by caption."""
    tables: dict[str, list[list[str]]] = {}
    caption: str | None = None
    current: list[list[str]] | None = None
    for line in text.splitlines():
        if re.fullmatch(r"\*[^*]+\*", line):
            caption, current = line.strip("*"), None
        elif line.startswith("|"):
            if caption is None:
                continue
            cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
            if current is None:
                current = tables[caption] = []
            if not set("".join(cells)) <= set("-: "):
                current.append(cells)
        elif line.strip() or current is not None:  # any other text, or the blank line after a table
            caption, current = None, None
    return tables


def check_cell(column: str, cell: str, expected: dict[str, Any]) -> None:
    value = expected.get(column)
    if column == "top-1 (%)":
        n = expected["n"]
        if n == 1:
            match = re.fullmatch(r"([\d.]+) \(n = 1\)", cell)
            assert match and "±" not in cell, cell
        else:
            match = re.fullmatch(r"([\d.]+) ± ([\d.]+) \(n = (\d+)\)", cell)
            assert match and int(match[3]) == n, cell
            std, tol = _number(match[2])
            assert abs(std - expected["std"]) <= tol, (cell, expected["std"])
        mean, tol = _number(match[1])
        assert abs(mean - expected["mean"]) <= tol, (cell, expected["mean"])
        return
    if column == "m / pairs":
        m, pairs = cell.split(" / ")
        assert (m == "-" and expected["m"] is None) or int(m.replace(",", "")) == expected["m"], cell
        assert (pairs == "-" and expected["pairs"] is None) or int(pairs.replace(",", "")) == expected["pairs"], cell
        return
    if cell == "-" or isinstance(value, str):
        assert value == (None if cell == "-" else cell), (column, cell, value)
        return
    assert value is not None, (column, cell)
    if column.endswith("time"):
        number, tol = _seconds(cell)
    elif column in ("compression", "speed-up"):
        assert cell.endswith("x"), cell
        number, tol = _number(cell[:-1])
    else:
        number, tol = _number(cell)
    assert abs(number - value) <= tol, (column, cell, value)


def test_every_number_of_the_table_comes_from_results_json(evaluation, report):
    md_path, _ = report
    rows = json.loads((evaluation["eval"] / "results.json").read_text())
    expected = expected_table(rows)
    tables = markdown_tables(md_path.read_text())
    checked = 0
    for (_arch, target, mode), by_label in expected.items():
        caption = f"{target} · {'fine-tune' if mode == 'finetune' else 'linear probe'}"
        header, *body = tables[caption]
        assert header == FULL_TABLE_HEADER
        assert len(body) == len(by_label)
        for cells in body:
            label = {v: k for k, v in REFERENCE_NAMES.items()}.get(cells[0], cells[0])
            for column, cell in zip(header[1:], cells[1:], strict=True):
                check_cell(column, cell, by_label[label])
                checked += 1
    # 2 modes x 7 sources (4 sets, no pre-training, the two full-data rows) x 16 numeric columns
    assert checked == 2 * 7 * 16


class _Tables(HTMLParser):
    """Cells of every <table> of report.html, plus every src/href and tag name."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[list[list[str]]] = []
        self.links: list[str] = []
        self.tags: set[str] = set()
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        self.links += [v or "" for k, v in attrs if k in ("src", "href")]
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None:
            self.tables[-1][-1].append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def test_html_is_self_contained_and_prints_the_same_tables(report):
    md_path, html_path = report
    page = _Tables()
    page.feed(html_path.read_text())
    assert not {"script", "link", "iframe", "object"} & page.tags
    assert page.links and all(link.startswith("data:image/png;base64,") for link in page.links)
    html_tables = [t for t in page.tables if t and t[0] == FULL_TABLE_HEADER]
    md_tables = [t for t in markdown_tables(md_path.read_text()).values() if t[0] == FULL_TABLE_HEADER]
    assert len(html_tables) == len(md_tables) == 2
    assert html_tables == md_tables
    # the figures report.md points at exist
    for name in re.findall(r"\]\((report_figures/[^)]+\.png)\)", md_path.read_text()):
        assert (md_path.parent / name).is_file()


def test_cards_show_the_manifests(evaluation, report):
    md = report[0].read_text()
    boost = json.loads((evaluation["root"] / "boost_3" / "manifest.json").read_text())
    teacher = json.loads((evaluation["teacher"] / "manifest.json").read_text())
    assert f"{boost['storage']['image_equivalents']:.2f} image-equivalents" in md
    assert f"{boost['m']} x {len(boost['boost']['views'])} ({', '.join(boost['boost']['views'])})" in md
    assert "approximation networks" in md and "relative error" in md  # storage split, approximation error
    assert f"images {100 * boost['image_pca_explained']:.1f} %" in md
    assert f"**feature dim**: {teacher['feature_dim']}" in md and teacher["fingerprint"] in md
    figures = {p.stem for p in (report[0].parent / "report_figures").glob("*.png")}
    # teacher curves from the history.json above the artifact, accuracy, accuracy vs budget (random at 3 and
    # 10), the loss curves (every method but random logs one) and a grid per set
    assert {"teacher", "accuracy", "budget", "loss", "images_boost_3", "images_random_10"} <= figures
    assert "Missing or inconsistent" not in md


def test_missing_folders_are_named_and_explicit_ones_replace_the_config(evaluation, tmp_path):
    eval_dir = tmp_path / "eval"
    shutil.copytree(evaluation["eval"], eval_dir)
    config = (eval_dir / "config.yaml").read_text()
    (eval_dir / "config.yaml").write_text(config.replace(str(evaluation["root"]), "/nowhere"))
    md = build_report(eval_dir)[0].read_text()
    assert "teacher folder `/nowhere/teacher_run/teacher` not found" in md
    assert "no distilled folder read for boost@3, random@3, random@10, krr_st@10" in md
    assert "| random@10 |" in md  # the table still stands on results.json alone
    md = build_report(eval_dir, tmp_path / "explicit", teacher=evaluation["teacher"],
                      distilled=[evaluation["root"] / "boost_3"])[0].read_text()
    assert "teacher folder" not in md and "no distilled folder read for random@3, random@10, krr_st@10" in md


def test_a_config_yaml_that_is_not_yaml_or_not_an_evaluations_is_said(evaluation, tmp_path):
    from ssdd.report.gather import gather

    eval_dir = tmp_path / "eval"
    shutil.copytree(evaluation["eval"], eval_dir)
    (eval_dir / "config.yaml").write_text("optim: {epochs: 5}\nprobe: {iterations: 20}\n")  # a teacher's
    assert any("is not an evaluation's config" in note for note in gather(eval_dir).notes)
    (eval_dir / "config.yaml").write_text("a: [unclosed\n")
    with pytest.raises(ValueError, match=r"config\.yaml: not valid YAML"):
        gather(eval_dir)


def test_a_moved_studys_report_finds_its_folders_by_fingerprint_from_any_folder(evaluation, tmp_path,
                                                                                  monkeypatch):
    moved = tmp_path / "moved"
    shutil.copytree(evaluation["root"], moved, ignore=shutil.ignore_patterns("report*"))
    config = (moved / "eval" / "config.yaml").read_text()
    (moved / "eval" / "config.yaml").write_text(config.replace(str(evaluation["root"]), "runs/study"))  # as a
    # study records them: relative to the folder it ran in
    elsewhere = tmp_path / "elsewhere"
    make_teacher(elsewhere / "runs" / "study" / "teacher_run" / "teacher", seed=1)  # another teacher at that path
    monkeypatch.chdir(elsewhere)
    md = build_report(moved / "eval", tmp_path / "r")[0].read_text()
    teacher = json.loads((evaluation["teacher"] / "manifest.json").read_text())
    assert "Missing or inconsistent" not in md and teacher["fingerprint"] in md
    assert f"{json.loads((moved / 'boost_3' / 'manifest.json').read_text())['m']} x " in md  # the Boost card
    assert {"teacher", "images_boost_3", "images_random_10"} <= {p.stem for p in (tmp_path / "r" /
                                                                                  "report_figures").glob("*.png")}


def test_cli_report_writes_both_files(evaluation, tmp_path, capsys):
    assert main(["report", str(evaluation["eval"]), "--out", str(tmp_path / "r")]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "r" / "report.md"), str(tmp_path / "r" / "report.html")]
    assert main(["report", str(tmp_path / "absent")]) == 2
    assert "absent: no such folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["report", str(tmp_path / "empty")]) == 2
    assert "results.json: no results to report" in capsys.readouterr().err


def test_report_renders_in_headless_chromium(report, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("chromium is not installed")
    shot = tmp_path / "shot.png"
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                    "--window-size=1280,2000", report[1].as_uri()], check=True, capture_output=True, timeout=120)
    from PIL import Image

    with Image.open(shot) as image:
        assert image.size == (1280, 2000)
        assert len(image.convert("L").getcolors(1 << 16) or []) > 50  # not a blank page


def test_a_value_that_rounds_to_zero_has_no_minus_sign():
    from ssdd.evaluation.report import _fmt
    from ssdd.report.formats import fixed

    assert fixed(-0.001, sign=True) == "+0.00" and fixed(-0.004) == "0.00" and fixed(-0.006) == "-0.01"
    assert _fmt(-0.0004, "+.2f") == "+0.00" and _fmt(-0.02, "+.2f") == "-0.02" and _fmt(None, ".2f") == "-"


def test_each_method_s_loss_curve_is_labelled_with_its_own_loss():
    from ssdd.distill.registry import loss_name

    assert "matching" in loss_name("mkdt") and "KRR" not in loss_name("mkdt")
    assert "KRR" in loss_name("krr_st")
    assert loss_name("boost") == loss_name("krr_st")


def test_the_report_names_both_full_data_rows_and_the_retention_denominator(evaluation, report):
    md = report[0].read_text()
    assert "**evaluation device**: cpu (channels-last memory format)" in md  # channels_last=auto
    assert "Retention divides by \"full data, distilled rows' recipe\" (every source image with the teacher's " \
           "representation of the un-augmented image as its target, trained exactly like the distilled sets: 2 " \
           "epochs, 2 SGD steps, constant lr 0.1, no augmentation); \"full data, tuned recipe\" (1 epoch, 4 SGD " \
           "steps over crop + flipped source images" in md
    glance = markdown_table_after(md, "## At a glance")
    assert glance[0][:3] == ["target · mode", "full data, distilled rows' recipe", "full data, tuned recipe"]
    assert "| full data, distilled rows' recipe |" in md and "| full data, tuned recipe |" in md  # full tables
    assert "retention divided by" not in md  # no departure: the run has the protocol's denominator
    assert "**fine-tuning**: tiny 3 iterations (by role: 10,000 for the source-scale targets (cifar10, " in md


def markdown_table_after(text: str, heading: str) -> list[list[str]]:
    lines = text.split(heading, 1)[1].strip().splitlines()
    rows = [[c.strip() for c in line.strip().strip("|").split(" | ")] for line in lines if line.startswith("|")
            and not set(line) <= set("|-: ")]
    return rows


def test_an_evaluation_written_before_the_same_recipe_row_still_reports(evaluation, tmp_path):
    """Old results: no same-recipe rows, no steps or fine-tuning iterations, a config without the new settings
    and a summary.json written by the old code; retention divides by the tuned row and the report says so."""
    eval_dir = tmp_path / "eval"
    shutil.copytree(evaluation["eval"], eval_dir)
    old_keys = ("pretrain_steps", "pretrain_samples", "finetune_iterations", "distill_steps", "channels_last")
    rows = [{k: v for k, v in r.items() if k not in old_keys}
            for r in json.loads((eval_dir / "results.json").read_text()) if r["label"] != "full_data_same_recipe"]
    (eval_dir / "results.json").write_text(json.dumps(rows))
    config = yaml.safe_load((eval_dir / "config.yaml").read_text())
    del config["full_data"]["same_recipe"], config["finetune"]["small_by"], config["finetune"]["source_scale"]
    (eval_dir / "config.yaml").write_text(yaml.safe_dump(config))
    summary = json.loads((eval_dir / "summary.json").read_text())
    summary["rows"] = [{k: v for k, v in s.items() if k not in ("retention_of", *old_keys)}
                       for s in summary["rows"] if s["label"] != "full_data_same_recipe"]
    (eval_dir / "summary.json").write_text(json.dumps(summary))
    md = build_report(eval_dir, tmp_path / "out")[0].read_text()
    assert "Retention divides by \"full data, tuned recipe\" (1 epoch over crop + flipped source images" in md
    assert "the only full-data row of this run" in md
    assert "retention divided by full data, tuned recipe (protocol: full data, distilled rows' recipe" in md
    assert "fine-tuning length by the target's training-set size" in md
    assert "**fine-tuning**: 10,000 or 3 iterations (by size: 3 for targets under 10,000 training images)" in md
    tables = markdown_tables(md)
    expected = expected_table(rows)
    header, *body = tables["tiny · fine-tune"]
    assert len(body) == 6  # 4 sets, no pre-training, the tuned full-data row
    for cells in body:
        label = {v: k for k, v in REFERENCE_NAMES.items()}.get(cells[0], cells[0])
        check_cell("retention", cells[header.index("retention")], expected[("convnet", "tiny", "finetune")][label])
    # the rows predate distill_steps: the sets' manifests give the outer steps; their layout was contiguous
    steps = {cells[0]: cells[header.index("distillation steps")] for cells in body}
    for name in SETS:
        manifest = json.loads((evaluation["root"] / name / "manifest.json").read_text())
        label = source_label(manifest)
        assert steps[label] == (f"{manifest['steps_done']:,}" if manifest.get("steps_done") is not None else "-")
    assert any(value not in ("-", "0") for value in steps.values())
    assert "(contiguous memory format)" in md
    assert {cells[header.index("samples seen")] for cells in body} == {"-"}  # no steps recorded: unknown


def test_sets_keep_the_configs_order_when_reused_rows_come_first(evaluation, tmp_path):
    """Cells reused from another evaluation are written first in results.json; the report still lists the sets
    in the order the config names their folders."""
    from ssdd.report.gather import gather

    eval_dir = tmp_path / "eval"
    shutil.copytree(evaluation["eval"], eval_dir)
    rows = json.loads((eval_dir / "results.json").read_text())
    (eval_dir / "results.json").write_text(json.dumps(sorted(rows, key=lambda r: r["label"] != "krr_st@10")))
    in_config = [source_label(json.loads((evaluation["root"] / name / "manifest.json").read_text())) for name in SETS]
    assert [d.label for d in gather(eval_dir).distilled] == in_config
    assert in_config[0] != "krr_st@10"  # the shuffled rows put it first


def test_samples_seen_and_gap_closed_are_in_every_table_and_old_rows_get_samples_from_the_config(evaluation, report,
                                                                                             tmp_path):
    """report.md and report.html show the samples seen and the gap closed (glance, each set's comparison, full
    tables); rows recorded before `pretrain_samples` get it from config.yaml when that reproduces their steps."""
    md_path, html_path = report
    md = md_path.read_text()
    rows = json.loads((evaluation["eval"] / "results.json").read_text())
    page = _Tables()
    page.feed(html_path.read_text())
    md_headers = [[c.strip() for c in line.strip().strip("|").split(" | ")] for line in md.splitlines()
                  if line.startswith("| ") and "top-1" in line]
    for headers in (md_headers, [t[0] for t in page.tables if t]):
        assert sum("gap closed" in h for h in headers) == 1 + len(SETS) + 2  # glance, comparisons, full tables
        assert sum("samples seen" in h for h in headers) == 2
    for text in (md, html_path.read_text()):  # each set's cost table, against no pre-training and full data
        assert text.count("pre-training samples seen") == len(SETS)
    boost = next(r for r in rows if r["label"] == "boost@3")
    assert f"| pre-training samples seen | {boost['pretrain_samples']:,} | 0 |" in md
    eval_dir = tmp_path / "eval"
    shutil.copytree(evaluation["eval"], eval_dir)
    (eval_dir / "results.json").write_text(json.dumps([{k: v for k, v in r.items() if k != "pretrain_samples"}
                                                       for r in rows]))
    (eval_dir / "summary.json").unlink()
    old = markdown_tables(build_report(eval_dir, tmp_path / "out")[0].read_text())
    new = markdown_tables(md)
    for caption, table in new.items():
        if table[0] == FULL_TABLE_HEADER:
            at = FULL_TABLE_HEADER.index("samples seen")
            assert [r[at] for r in old[caption]] == [r[at] for r in table]
            assert any(r[at] not in ("-", "0") for r in table[1:])


# ---------------------------------------------------------------- folders: where the report goes, which it reads


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("ssdd report: error: ")
    return err


def test_cli_report_out_that_holds_another_run_is_refused_but_its_own_folders_are_not(evaluation, tmp_path, capsys):
    root = evaluation["root"]
    study = tmp_path / "study"  # a study whose evaluation stage is a copy of this evaluation
    shutil.copytree(evaluation["eval"], study / "evaluate" / "evaluate-0123abcd")
    (study / "study.yaml").write_text(f"out_dir: {study}\n")
    named = tmp_path / "shared" / "mine"  # a named study: its own files in out_dir/<name>
    shutil.copytree(evaluation["eval"], tmp_path / "shared" / "evaluate" / "evaluate-0123abcd")
    named.mkdir()
    (named / "study.yaml").write_text(f"out_dir: {tmp_path / 'shared'}\nname: mine\n")
    other = tmp_path / "other_eval"
    shutil.copytree(evaluation["eval"], other)
    # the evaluation folder itself (the default), the study folder holding the evaluation, a named study's folder
    for eval_dir, out in ((other, None), (study / "evaluate" / "evaluate-0123abcd", study),
                          (tmp_path / "shared" / "evaluate" / "evaluate-0123abcd", named)):
        assert main(["report", str(eval_dir), *(["--out", str(out)] if out else [])]) == 0
        assert ((out or eval_dir) / "report.md").is_file() and ((out or eval_dir) / "report.html").is_file()
    capsys.readouterr()
    # a teacher artifact, a folder inside it, a distilled set, another evaluation, a study without this evaluation
    watched = [evaluation["teacher"], root / "boost_3", other, study]
    teacher, mine = evaluation["teacher"], evaluation["eval"]
    for eval_dir, out in ((mine, teacher), (mine, teacher / "r"), (mine, root / "boost_3"), (mine, other),
                          (mine, study), (other, study)):
        before = {folder: _tree(folder) for folder in watched}
        assert main(["report", str(eval_dir), "--out", str(out)]) == 2
        assert "nothing there was changed" in _one_line_error(capsys)
        assert {folder: _tree(folder) for folder in watched} == before


def test_cli_report_explicit_folders_must_exist_and_be_of_their_kind(evaluation, tmp_path, capsys):
    root, out = evaluation["root"], tmp_path / "r"
    for flags, expected in ((["--teacher", str(tmp_path / "nosuchdir")], "no such folder"),
                            (["--teacher", str(root / "boost_3")], "not a teacher artifact"),
                            (["--teacher", str(root / "teacher_run")], "its artifact is"),
                            (["--distilled", str(evaluation["teacher"])], "not a distilled set"),
                            (["--distilled", str(root / "boost_3"), str(tmp_path / "nosuch")], "no such folder")):
        assert main(["report", str(evaluation["eval"]), "--out", str(out), *flags]) == 2
        assert expected in _one_line_error(capsys)
        assert not out.exists()


def test_a_copied_study_reports_its_own_folders_not_the_originals(evaluation, tmp_path, monkeypatch, capsys):
    runs = tmp_path / "runs"
    shutil.copytree(evaluation["root"], runs / "orig", ignore=shutil.ignore_patterns("report*"))
    config = (runs / "orig" / "eval" / "config.yaml").read_text()
    (runs / "orig" / "eval" / "config.yaml").write_text(config.replace(str(evaluation["root"]), "runs/orig"))
    shutil.copytree(runs / "orig", runs / "copy")  # `cp -r orig copy`: its config still names runs/orig/...
    (tmp_path / "elsewhere").mkdir()
    for cwd, eval_dir in ((tmp_path, "runs/copy/eval"), (tmp_path / "elsewhere", "../runs/copy/eval")):
        monkeypatch.chdir(cwd)
        assert main(["report", eval_dir, "--out", "r"]) == 0
        folders = [line for line in (cwd / "r" / "report.md").read_text().splitlines() if "**folder**" in line]
        assert len(folders) == 1 + len(SETS)
        assert all("runs/copy/" in line and "orig" not in line and "/../" not in line for line in folders), folders


def test_a_folder_whose_fingerprint_does_not_match_the_record_is_shown_with_a_note(evaluation, tmp_path):
    eval_dir = tmp_path / "eval"
    shutil.copytree(evaluation["eval"], eval_dir)
    inputs = json.loads((eval_dir / "inputs.json").read_text())
    (eval_dir / "inputs.json").write_text(json.dumps({**inputs, "teacher": "0000dead"}))
    rows = json.loads((eval_dir / "results.json").read_text())
    (eval_dir / "results.json").write_text(json.dumps([{**r, "set_fingerprint": "000000000000"}
                                                       if r["label"] == "boost@3" else r for r in rows]))
    md = build_report(eval_dir, tmp_path / "r")[0].read_text()
    assert "Missing or inconsistent" in md
    assert "its fingerprint is not the one the evaluation recorded (0000dead)" in md
    assert md.count("**does not match**") == 2  # the teacher's card and boost@3's, no other set's
    assert md.count("its set fingerprint is none the evaluation's rows record") == 2  # the note and the card


def test_the_departures_from_the_protocol_name_capped_epochs_and_batch_sizes():
    """The demo's evaluation settings, as the report lists where they depart from the `full` protocol."""
    import yaml

    from ssdd.config import find_preset
    from ssdd.report.content import _departures

    demo = yaml.safe_load(find_preset("demo_evaluate").read_text())
    found = _departures(demo)
    assert "pre-training 100 epochs capped at 200 SGD steps (protocol: 1,000 epochs, no cap)" in found
    assert "fine-tuning at batch 128 (protocol: 256)" in found
    assert "the tuned full-data row at batch 128 (protocol: 256)" in found
    assert not any("pre-training at batch" in line for line in found)  # the demo pre-trains at the protocol's 256
    assert _departures({"full_data": {"enabled": False, "batch_size": 64}}) == []  # a row that does not run
    assert _departures({"probe": {"batch_size": 256}}) == ["the linear probe at batch 256 (protocol: 512)"]
    assert _departures({"precision": "bf16"}) == ["training forward passes in bf16 (precision=bf16; protocol: fp32)"]
    assert _departures({"precision": "fp32", "compile": "on", "channels_last": "on"}) == []  # rounding only


def test_a_report_of_an_unfinished_evaluation_says_so(evaluation, tmp_path):
    """An interrupted evaluation's results.json holds fewer cells than its config asks for: the report says how
    many, so that its means and figures are not read as the whole evaluation's."""
    eval_dir = tmp_path / "eval"
    shutil.copytree(evaluation["eval"], eval_dir)
    assert not [n for n in gather(eval_dir).notes if "unfinished" in n]  # every cell there: no note
    rows = json.loads((eval_dir / "results.json").read_text())
    (eval_dir / "results.json").write_text(json.dumps([r for r in rows if r["seed"] == rows[0]["seed"]]))
    planned = 2 * (len(SETS) + 3)  # 2 seeds x (the sets, no pre-training and both full-data rows)
    note = (f"unfinished evaluation: {planned // 2} of its {planned} cells are in results.json, so every row, mean "
            f"and figure here stands on those alone (`ssdd evaluate --resume` with its config measures the rest)")
    assert note in gather(eval_dir).notes
    assert note in build_report(eval_dir, tmp_path / "out")[0].read_text()


def test_the_report_of_a_study_without_an_evaluation_says_why(tmp_path, capsys):
    """A study interrupted before its study.json, paused before its evaluation, or without an evaluation stage:
    `ssdd report` on its folder says which and what to do, instead of naming a results.json no study writes."""
    study = tmp_path / "study"
    study.mkdir()
    (study / "study.yaml").write_text("out_dir: x\n")
    expected = [f"{study} holds a study that has not finished (no study.json yet): run its `ssdd reproduce` again to "
                f"finish it (`ssdd report` on its evaluation stage's folder, OUT/evaluate/evaluate-<key>, reports the "
                f"cells finished so far)",
                f"{study} holds a study paused before its evaluation: run its `ssdd reproduce` again to go on",
                f"{study} holds a finished study without an evaluation stage: nothing to report (a study evaluates "
                f"its sets when it has `evaluate: {{config: PRESET}}`)"]
    for saved, line in zip((None, {"finished": False, "evaluation": None}, {"finished": True, "evaluation": None}),
                           expected, strict=True):
        if saved is not None:
            (study / "study.json").write_text(json.dumps(saved))
        assert main(["report", str(study)]) == 2
        assert capsys.readouterr().err.strip() == f"ssdd report: error: {line}"
