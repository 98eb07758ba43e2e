"""Results of `ssdd evaluate`: per-run rows (CSV + JSON), the mean +- std summary table and a plot."""

from __future__ import annotations

import csv
import json
import math
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from ssdd.evaluation.config import FullDataConfig, PretrainConfig
from ssdd.evaluation.gap import gap_closed, shown_gap_closed
from ssdd.evaluation.pretrain import full_data_samples, full_data_steps, pretrain_samples, pretrain_steps
from ssdd.evaluation.references import (
    FULL_DATA,
    FULL_DATA_METHODS,
    FULL_DATA_SAME_RECIPE,
    NO_PRETRAIN,
    REFERENCE_METHODS,
    retention_reference,
)
from ssdd.evaluation.validation import EVAL_SPLIT_TEST
from ssdd.run.runtime import atomic_write

ROW_FIELDS = ["method", "label", "budget", "arch", "arch_width", "target", "seed", "mode", "top1", "cka_to_teacher",
              "image_equivalents", "bytes", "compression", "m", "views", "pretrain_s", "pretrain_steps",
              "pretrain_samples", "finetune_iterations", "eval_s", "distill_s", "distill_steps", "distill_device",
              "device", "channels_last", "precision", "compiled", "eval_split", "validation_fraction",
              "validation_seed"]


# what every row must hold for the summary (summarize) and a resume (the cell it measured)
_ROW_TEXT = ("label", "method", "arch", "target", "mode")
_ROW_NUMBERS = ("top1", "pretrain_s", "eval_s")


def _row_problem(row: Any) -> str | None:
    if not isinstance(row, dict):
        return f"is {_json_kind(row)}, not a result row (a JSON object)"
    for key in (*_ROW_TEXT, "seed", *_ROW_NUMBERS):
        if key not in row:
            return f"lacks '{key}'"
    for key in _ROW_TEXT:
        if not isinstance(row[key], str):
            return f"has '{key}' {_json_kind(row[key])}, not text"
    if not isinstance(row["seed"], int) or isinstance(row["seed"], bool):
        return f"has 'seed' {_json_kind(row['seed'])}, not a whole number"
    for key in _ROW_NUMBERS:
        value = row[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return f"has '{key}' {_json_kind(value)}, not a finite number"
    return None


def _json_kind(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value).replace("nan", "NaN").replace("inf", "Infinity")
    if isinstance(value, (dict, list)):
        return "an object" if isinstance(value, dict) else "a list"
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."


def read_results(path: str | Path, report: bool = False) -> list[dict[str, Any]]:
    """The rows of a results.json (or the rows set aside beside it), checked: ValueError in one line naming the
    file and what is wrong with it (not JSON, not a list of rows, a row without a field or with a value that is
    not one; with `report`, no rows at all: nothing to summarise, where --resume takes an empty list as a run
    stopped before its first cell). Every reader (--report-only, --resume, `ssdd report`) reads them here."""
    path = Path(path)
    advice = "restore it, or move it away to start the evaluation afresh"
    try:
        rows = json.loads(path.read_text())
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not valid JSON (not text); {advice}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc.msg}, line {exc.lineno} column {exc.colno}); "
                         f"{advice}") from None
    if not isinstance(rows, list):
        raise ValueError(f"{path}: holds {_json_kind(rows)}, not a list of result rows; {advice}")
    for index, row in enumerate(rows):
        problem = _row_problem(row)
        if problem is not None:
            raise ValueError(f"{path}: row {index + 1} {problem}; {advice}")
    if report and not rows:
        raise ValueError(f"{path}: holds no rows (no cell of the evaluation finished); run the evaluation, or "
                         f"continue it with --resume, before reporting")
    return rows


def write_results(rows: list[dict[str, Any]], out_dir: Path) -> None:
    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=ROW_FIELDS, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)

    atomic_write(out_dir / "results.csv", write_csv)
    atomic_write(out_dir / "results.json", lambda tmp: tmp.write_text(json.dumps(rows, indent=1) + "\n"))


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


# the settings of a network that a row records beside its name, and how a label writes each
_ARCH_SETTINGS = (("arch_width", "-w{}"), ("arch_depth", "-d{}"), ("arch_feature", "-{}"))


def with_arch_labels(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with `arch` as the name of the network they are reported under: its name (convnet), with the
    width, depth or feature that tells it apart from another network of that name in the same rows
    (convnet-w8, convnet-w16); a setting a row does not record (None: rows written before it was) tells nothing
    apart. Rows whose name is already unique come back unchanged."""
    recorded: dict[str, dict[str, set[Any]]] = defaultdict(lambda: defaultdict(set))
    for row in rows:
        for key, _ in _ARCH_SETTINGS:
            if row.get(key) is not None:
                recorded[row["arch"]][key].add(row[key])
    labelled = []
    for row in rows:
        varying = recorded[row["arch"]]
        suffix = "".join(form.format("?" if row.get(key) is None else row[key])
                         for key, form in _ARCH_SETTINGS if len(varying[key]) > 1)
        labelled.append({**row, "arch": row["arch"] + suffix} if suffix else row)
    return labelled


def summarize(rows: list[dict[str, Any]], config: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """Mean +- std over seeds per (label, arch, target, mode), with retention against full data (the row with
    the distilled rows' recipe when the evaluation has one, else the tuned row: `retention_of` names it; one
    row for the whole evaluation, so a panel that lacks it has no retention), the gap closed between no
    pre-training and that full-data row, and gains over no pre-training and over the random subset at the same
    budget. `config` (the evaluation's config.yaml, as a dict) gives rows recorded before `pretrain_samples`
    existed theirs where it determines them exactly (`recorded_samples`); without it they stay unknown (None)."""
    rows = with_arch_labels(rows)  # two widths of one network are two networks, not two seeds of one
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[(row["label"], row["arch"], row["target"], row["mode"])].append(row)
    means = {key: _mean_std([r["top1"] for r in members])[0] for key, members in groups.items()}
    full_pretrain_s = {(r["label"], r["arch"], r["seed"]): r["pretrain_s"] for r in rows
                       if r["label"] in FULL_DATA_METHODS}
    summary = []
    reference = retention_reference(key[0] for key in means)  # one denominator for every panel
    for (label, arch, target, mode), members in groups.items():
        first = members[0]
        mean, std = _mean_std([r["top1"] for r in members])
        full = means.get((reference, arch, target, mode))
        scratch = means.get((NO_PRETRAIN, arch, target, mode))
        random_label = f"random@{first['budget']:g}" if first.get("budget") is not None else None
        random = means.get((random_label, arch, target, mode)) if random_label else None
        ckas = [r["cka_to_teacher"] for r in members if r.get("cka_to_teacher") is not None]
        summary.append({
            "label": label, "method": first["method"], "budget": first.get("budget"), "arch": arch, "target": target,
            "mode": mode, "seeds": len(members), "top1_mean": mean, "top1_std": std,
            "retention": mean / full if full else None, "retention_of": reference,
            "gap_closed": gap_closed(mean, scratch, full) if full is not None and scratch is not None else None,
            "gain_vs_no_pretrain": mean - scratch if scratch is not None and label != NO_PRETRAIN else None,
            "gain_vs_random": mean - random if random is not None and label != random_label else None,
            "image_equivalents": first.get("image_equivalents"), "bytes": first.get("bytes"),
            "compression": first.get("compression"), "m": first.get("m"), "views": first.get("views"),
            "cka_to_teacher": statistics.fmean(ckas) if ckas else None,
            "pretrain_s": statistics.fmean(r["pretrain_s"] for r in members),
            "pretrain_steps": first.get("pretrain_steps"), "pretrain_samples": recorded_samples(first, config),
            "finetune_iterations": first.get("finetune_iterations"),
            "pretrain_speedup": _speedup(members, full_pretrain_s, reference)
            if label not in REFERENCE_METHODS else None,
            "eval_s": statistics.fmean(r["eval_s"] for r in members), "distill_s": first.get("distill_s"),
            "distill_steps": next((r["distill_steps"] for r in members if r.get("distill_steps") is not None), None),
            "device": first.get("device"), "eval_split": _split(members),
        })
    order = {method: i for i, method in enumerate(REFERENCE_METHODS, 1)}  # the references after the sets
    summary.sort(key=lambda s: (s["arch"], s["target"], s["mode"], order.get(s["method"], 0), s["label"]))
    return summary


def recorded_samples(row: dict[str, Any], config: dict[str, Any] | None = None) -> int | None:
    """The samples a row's pre-training saw (`pretrain_samples`). A row recorded before the field existed gets
    them from the evaluation's `config` only where that is exact: no pre-training saw none, and any other row
    when the config's pre-training settings give the very steps the row recorded; otherwise None (unknown)."""
    if row.get("pretrain_samples") is not None:
        return int(row["pretrain_samples"])
    if row.get("method") == NO_PRETRAIN:
        return 0
    steps, count = row.get("pretrain_steps"), row.get("views")
    if not config or steps is None or not count:
        return None
    tuned = row.get("method") == FULL_DATA
    schema = FullDataConfig if tuned else PretrainConfig
    saved = config.get("full_data" if tuned else "pretrain")
    if not isinstance(saved, dict):
        return None
    try:
        settings = schema(**{k: saved[k] for k in ("epochs", "batch_size", "max_iterations") if k in saved})
        planned = full_data_steps(count, settings) if tuned else pretrain_steps(count, settings)
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if planned != steps:
        return None  # the config does not describe how this row was trained
    return full_data_samples(count, settings) if tuned else pretrain_samples(count, settings)


def _split(members: list[dict[str, Any]]) -> str:
    """The split a summary row's members scored: test (rows that predate the record), validation, or mixed."""
    splits = {r.get("eval_split") or EVAL_SPLIT_TEST for r in members}
    return splits.pop() if len(splits) == 1 else "mixed"


def split_note(summary: list[dict[str, Any]], config: dict[str, Any] | None = None) -> str | None:
    """One sentence when rows scored a validation split rather than the test split (None otherwise)."""
    if all(s.get("eval_split", EVAL_SPLIT_TEST) == EVAL_SPLIT_TEST for s in summary):
        return None
    validation = (config or {}).get("validation") or {}
    carved = f" (fraction {validation['fraction']:g}, seed {validation.get('seed', 0)})" \
        if isinstance(validation.get("fraction"), (int, float)) else ""
    return (f"Scored on a validation split held out from each target's train split{carved}, not on the test "
            "split: numbers for choosing settings, not for reporting (docs/protocol.md, \"Validation split\").")


def _speedup(members: list[dict[str, Any]], full_pretrain_s: dict[tuple[Any, Any, Any], float],
             reference: str | None) -> float | None:
    """The `reference` full-data row's pre-training time over this source's, paired by architecture and seed."""
    ratios = [full_pretrain_s[(reference, r["arch"], r["seed"])] / r["pretrain_s"] for r in members
              if (reference, r["arch"], r["seed"]) in full_pretrain_s and r["pretrain_s"] > 0]
    return statistics.fmean(ratios) if ratios else None


def _fmt(value: Any, spec: str, suffix: str = "") -> str:
    if value is None:
        return "-"
    if spec.endswith("f") and round(value, int(spec[-2])) == 0:
        value = 0.0  # no "-0.00"
    return f"{value:{spec}}{suffix}"


def format_table(summary: list[dict[str, Any]]) -> str:
    from ssdd.report.formats import mean_std, ratio

    header = ("| pre-training | arch | target | mode | top-1 (%) | retention | gap closed | vs no pre-train | "
              "vs random | storage (img-eq) | KiB | compression | m / views | CKA | pre-train s | steps | "
              "samples seen | speed-up vs full |")
    lines = [header, "|" + " --- |" * (header.count("|") - 1)]
    for s in summary:
        lines.append(
            f"| {s['label']} | {s['arch']} | {s['target']} | {s['mode']} | "
            f"{mean_std(s['top1_mean'], s['top1_std'], s['seeds'])} | {_fmt(s['retention'], '.2f')} | "
            f"{shown_gap_closed(s, summary, lambda v: _fmt(v, '.2f'))} | "
            f"{_fmt(s['gain_vs_no_pretrain'], '+.2f')} | {_fmt(s['gain_vs_random'], '+.2f')} | "
            f"{_fmt(s['image_equivalents'], '.1f')} | {_fmt(s['bytes'] and s['bytes'] / 1024, '.1f')} | "
            f"{ratio(s.get('compression'))} | "
            f"{_fmt(s['m'], 'd')} / {_fmt(s['views'], 'd')} | {_fmt(s['cka_to_teacher'], '.3f')} | "
            f"{s['pretrain_s']:.1f} | {_fmt(s.get('pretrain_steps'), ',d')} | "
            f"{_fmt(s.get('pretrain_samples'), ',d')} | {ratio(s.get('pretrain_speedup'))} |")
    return "\n".join(lines)


def write_report(rows: list[dict[str, Any]], out_dir: Path, extra: dict[str, Any] | None = None) -> str:
    """summary.json, summary.md and results.png from the rows; returns the Markdown table."""
    from ssdd.run.runtime import write_json

    config = (extra or {}).get("config")
    summary = summarize(rows, config)
    write_json(out_dir / "summary.json", {"rows": summary, **(extra or {})})
    table = format_table(summary)
    note = split_note(summary, config)
    text = table if note is None else f"{note}\n\n{table}"
    atomic_write(out_dir / "summary.md", lambda tmp: tmp.write_text(text + "\n"))
    plot_summary(summary, out_dir / "results.png")
    return text


def report_from_results(out_dir: Path) -> str:
    """Rebuild the summary of a finished (or interrupted) evaluation from its results.json."""
    path = Path(out_dir) / "results.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results to summarise")
    return write_report(read_results(path, report=True), Path(out_dir), _saved_extra(Path(out_dir)))


def _saved_extra(out_dir: Path) -> dict[str, Any]:
    """What the run recorded beside the rows (versions, config): kept from the previous summary.json, the
    config read back from config.yaml when that summary is gone. Versions of today are never substituted."""
    import yaml

    summary = out_dir / "summary.json"
    extra = {k: v for k, v in json.loads(summary.read_text()).items() if k != "rows"} if summary.is_file() else {}
    if "config" not in extra and (out_dir / "config.yaml").is_file():
        extra["config"] = yaml.safe_load((out_dir / "config.yaml").read_text())
    return extra


REFERENCE_COLOURS = {NO_PRETRAIN: "tab:gray", FULL_DATA_SAME_RECIPE: "tab:green", FULL_DATA: "tab:olive"}


def plot_summary(summary: list[dict[str, Any]], path: Path) -> None:
    """One panel per (target, mode): mean top-1 with std error bars for every pre-training source."""
    if not summary:
        return
    from ssdd.report.plots import pyplot, save_figure

    plt = pyplot()
    panels = sorted({(s["arch"], s["target"], s["mode"]) for s in summary})
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (arch, target, mode) in zip(axes[0], panels, strict=True):
        rows = [s for s in summary if (s["arch"], s["target"], s["mode"]) == (arch, target, mode)]
        ax.bar(range(len(rows)), [r["top1_mean"] for r in rows], yerr=[r["top1_std"] for r in rows], capsize=3,
               color=[REFERENCE_COLOURS.get(r["method"], "tab:blue") for r in rows])
        ax.set_xticks(range(len(rows)), [r["label"] for r in rows], rotation=30, ha="right", fontsize=8)
        ax.set(title=f"{target} / {mode} / {arch}", ylabel="top-1 (%)")
    fig.tight_layout()
    save_figure(fig, path)
