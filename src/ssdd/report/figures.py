"""The report's figures as PNG bytes: accuracy per target and mode, accuracy against budget, accuracy across
architectures, distillation loss curves, the teacher's training curves and a grid of each distilled set's
images."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from typing import Any

from ssdd.distill.registry import find_method, loss_name
from ssdd.report.gather import REFERENCE_METHODS, REFERENCE_NAMES, ReportData
from ssdd.report.plots import pyplot

EXTRA_COLOURS = ["tab:brown", "tab:cyan", "goldenrod"]  # none a method's or a reference row's colour
_ODD_COLOURS: set[str] = set()  # methods whose colour matplotlib does not know, noted once per process
MODE_NAMES = {"finetune": "fine-tune", "linear_probe": "linear probe"}
# (name, colour, line style) of each reference row's horizontal line
REFERENCE_STYLE = {method: (REFERENCE_NAMES[method], colour, style) for method, colour, style in (
    ("full_data_same_recipe", "darkgreen", "-"), ("full_data", "tab:olive", "--"), ("no_pretrain", "black", ":"))}


def png_bytes(fig: Any, dpi: int = 100) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", pad_inches=0.08)
    pyplot().close(fig)
    return buffer.getvalue()


def colours(labels: list[str], methods: dict[str, str]) -> dict[str, str]:
    """A colour per label: one per series (the label without its budget, so random@10 and random@100 match),
    the method's own for the first series of a method, extra colours for variants (boost-no-views@100)."""
    from matplotlib.colors import is_color_like

    taken: dict[str, str] = {}
    result, extra = {}, iter(EXTRA_COLOURS * 4)
    for label in labels:
        series = series_name(label)
        if series not in taken:
            method = find_method(methods[label])
            colour = method.colour if method else None
            if colour is not None and not is_color_like(colour):  # a plugin's: the figure still draws
                if method.name not in _ODD_COLOURS:
                    _ODD_COLOURS.add(method.name)
                    print(f"note: method {method.name}'s colour {colour!r} is not a matplotlib colour; its sets get "
                          f"another in the report's figures", file=sys.stderr)
                colour = None
            taken[series] = colour if colour is not None and colour not in taken.values() else next(extra)
        result[label] = taken[series]
    return result


def panel_title(arch: str, target: str, mode: str, several_archs: bool) -> str:
    name = f"{target} · {MODE_NAMES.get(mode, mode)}"
    return f"{name} · {arch}" if several_archs else name


def _padded_limits(values: list[float], pad: float = 0.15) -> tuple[float, float]:
    """The data range, at least one point tall, padded by `pad` of it on both sides, within [0, 100]."""
    low, high = min(values), max(values)
    span = max(high - low, 1.0)
    return max(0.0, low - pad * span), min(100.0, high + pad * span)


def accuracy_figure(data: ReportData) -> bytes | None:
    """Per (arch, target, mode): each distilled set's mean top-1 (error bars = std when n > 1) with the
    no-pre-training and full-data means as horizontal lines; the axis is padded around the data range."""
    panels = data.panels
    if not panels:
        return None
    plt = pyplot()
    several_archs = len({p[0] for p in panels}) > 1
    labels = [d.label for d in data.distilled]
    palette = colours(labels, {d.label: d.rows[0]["method"] for d in data.distilled})
    width = min(6.0, max(3.6, 0.7 * len(labels) + 1.8))
    columns = min(len(panels), max(2, int(12 // width)))
    rows_n = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows_n, columns, figsize=(width * columns, 3.5 * rows_n), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax, (arch, target, mode) in zip(axes.flat, panels, strict=False):
        rows = {s["label"]: s for s in data.summary if (s["arch"], s["target"], s["mode"]) == (arch, target, mode)}
        shown = [label for label in labels if label in rows]
        values: list[float] = []
        for x, label in enumerate(shown):
            s = rows[label]
            err = s["top1_std"] if s["seeds"] > 1 else None
            ax.errorbar(x, s["top1_mean"], yerr=err, fmt="o", ms=8, capsize=4, color=palette[label])
            ax.annotate(f"{s['top1_mean']:.2f}", (x, s["top1_mean"]), xytext=(9, 0), textcoords="offset points",
                        va="center", fontsize=8)
            values += [s["top1_mean"] - (err or 0), s["top1_mean"] + (err or 0)]
        refs = reference_values(data, arch, target, mode)
        values += refs.values()
        draw_references(ax, refs, values, with_values=True)
        lines = len(refs)
        if values:
            ax.set_ylim(*_padded_limits(values))
        ax.set_xlim(-0.6, max(len(shown), 1) - 0.4)
        ax.set_xticks(range(len(shown)), shown, rotation=20 if len(shown) > 3 else 0,
                      ha="right" if len(shown) > 3 else "center", fontsize=8)
        ax.set(title=panel_title(arch, target, mode, several_archs), ylabel="top-1 (%)")
        ax.grid(axis="y", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:  # no reference rows: nothing to name (matplotlib would warn)
            ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.14 if len(shown) <= 3 else -0.3),
                      ncol=2 if lines <= 2 else 1, frameon=False)  # both full-data rows' long names: one column
    fig.tight_layout()
    return png_bytes(fig)


def reference_values(data: ReportData, arch: str, target: str, mode: str) -> dict[str, float]:
    """Mean top-1 of each reference row of a panel, by method (REFERENCE_METHODS' order)."""
    refs = {method: data.reference(method, arch, target, mode) for method in REFERENCE_METHODS}
    return {method: ref["top1_mean"] for method, ref in refs.items() if ref is not None}


def reference_line_styles(values: dict[str, float], span: float) -> dict[str, Any]:
    """The line style of each reference line (by method): its own (REFERENCE_STYLE), except for lines that would
    lie on one another (within 1% of the panel's span `span`, e.g. two equal rows): those take the place in turns,
    dash after dash each in its own colour, so that every one stays visible."""
    styles: dict[str, Any] = {method: REFERENCE_STYLE[method][2] for method in values}
    groups: list[list[str]] = []
    for method, value in values.items():
        group = next((g for g in groups if abs(values[g[0]] - value) <= 0.01 * span), None)
        if group is None:
            groups.append([method])
        else:
            group.append(method)
    for group in groups:
        if len(group) > 1:
            for turn, method in enumerate(group):
                styles[method] = (turn * _DASH, (_DASH, (len(group) - 1) * _DASH))
    return styles


_DASH = 4.0  # length of one dash of coinciding reference lines (in line widths)


def draw_references(ax: Any, refs: dict[str, float], values: list[float], with_values: bool) -> None:
    """The horizontal line of each reference row, each labelled (with its value when `with_values`), none hidden
    by another at the same height."""
    span = (max(values) - min(values)) if values else 0.0
    styles = reference_line_styles(refs, span or 1.0)
    for method, value in refs.items():
        name, colour, _ = REFERENCE_STYLE[method]
        ax.axhline(value, color=colour, linestyle=styles[method], linewidth=1.2,
                   label=f"{name} {value:.2f}" if with_values else name)


def series_name(label: str) -> str:
    """boost@100 -> boost; krr_st@100/images-only -> krr_st/images-only."""
    name, _, rest = label.partition("@")
    _, _, suffix = rest.partition("/")
    return f"{name}/{suffix}" if suffix else name


def budget_figure(data: ReportData) -> bytes | None:
    """Mean top-1 against the budget for every method evaluated at several budgets (log x-axis)."""
    summary = [s for s in data.summary if s["method"] not in REFERENCE_METHODS and s.get("budget") is not None]
    budgets: dict[str, set[float]] = {}
    for s in summary:
        budgets.setdefault(series_name(s["label"]), set()).add(s["budget"])
    series = [name for name, values in budgets.items() if len(values) > 1]
    if not series:
        return None
    plt = pyplot()
    panels = data.panels
    several_archs = len({p[0] for p in panels}) > 1
    columns = 2 if len(panels) == 4 else min(3, len(panels))
    rows_n = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows_n, columns, figsize=(4.4 * columns, 3.4 * rows_n), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    methods = {series_name(s["label"]): s["method"] for s in summary}
    palette = colours(series, methods)
    for ax, (arch, target, mode) in zip(axes.flat, panels, strict=False):
        values: list[float] = []
        for name in series:
            points = sorted((s["budget"], s["top1_mean"], s["top1_std"] if s["seeds"] > 1 else 0.0)
                            for s in summary if series_name(s["label"]) == name
                            and (s["arch"], s["target"], s["mode"]) == (arch, target, mode))
            if points:
                x, y, err = zip(*points, strict=True)
                ax.errorbar(x, y, yerr=err if any(err) else None, marker="o", capsize=3, color=palette[name],
                            label=name)
                values += [v - e for v, e in zip(y, err, strict=True)] + [v + e for v, e in zip(y, err, strict=True)]
        refs = reference_values(data, arch, target, mode)
        values += refs.values()
        draw_references(ax, refs, values, with_values=False)
        if values:
            ax.set_ylim(*_padded_limits(values))
        ax.set_xscale("log")
        ax.margins(x=0.12)
        budgets_here = sorted({b for name in series for b in budgets[name]})
        ax.set_xticks(budgets_here, [f"{b:g}" for b in budgets_here])
        ax.minorticks_off()
        ax.set(title=panel_title(arch, target, mode, several_archs), xlabel="budget (image-equivalents)",
               ylabel="top-1 (%)")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    shared_legend(fig, axes.flat)
    return png_bytes(fig)


def shared_legend(fig: Any, axes: Any) -> None:
    """One legend under the whole figure for panels that draw the same series: each label once."""
    entries: dict[str, Any] = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            entries.setdefault(label, handle)
    if entries:
        fig.legend(list(entries.values()), list(entries), loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=min(len(entries), 4), fontsize=9, frameon=False)


def architecture_figure(data: ReportData) -> bytes | None:
    """Mean top-1 of every pre-training (sets and reference rows) on each architecture, one panel per target
    and mode, for an evaluation of several architectures; markers side by side within an architecture."""
    archs = list(dict.fromkeys(p[0] for p in data.panels))
    if len(archs) < 2:
        return None
    plt = pyplot()
    panels = list(dict.fromkeys((target, mode) for _, target, mode in data.panels))
    present = set(s["label"] for s in data.summary)
    sets = [d.label for d in data.distilled if d.label in present]  # the sets in the config's order
    sets += [label for label in dict.fromkeys(s["label"] for s in data.summary)
             if label not in sets and label not in REFERENCE_METHODS]
    labels = [*sets, *(method for method in REFERENCE_METHODS if method in present)]  # then the references
    palette = colours([label for label in labels if label not in REFERENCE_METHODS],
                      {s["label"]: s["method"] for s in data.summary})
    palette.update({method: REFERENCE_STYLE[method][1] for method in REFERENCE_METHODS})
    width = 0.8 / max(1, len(labels))
    fig, axes = plt.subplots(1, len(panels), figsize=(max(5.0, 0.9 * len(archs) + 2) * len(panels), 3.8),
                             squeeze=False)
    for ax, (target, mode) in zip(axes[0], panels, strict=True):
        values: list[float] = []
        for k, label in enumerate(labels):
            points = [(i, s["top1_mean"], s["top1_std"] if s["seeds"] > 1 else 0.0) for i, arch in enumerate(archs)
                      for s in data.summary if (s["label"], s["arch"], s["target"], s["mode"]) == (label, arch,
                                                                                               target, mode)]
            if not points:
                continue
            x = [i - 0.4 + width * (k + 0.5) for i, _, _ in points]
            y, err = [p[1] for p in points], [p[2] for p in points]
            name = REFERENCE_STYLE[label][0] if label in REFERENCE_STYLE else label
            ax.errorbar(x, y, yerr=err if any(err) else None, fmt="s" if label in REFERENCE_STYLE else "o",
                        capsize=2, color=palette[label], label=name, markersize=5)
            values += [v - e for v, e in zip(y, err, strict=True)] + [v + e for v, e in zip(y, err, strict=True)]
        if values:
            ax.set_ylim(*_padded_limits(values))
        ax.set_xticks(range(len(archs)), archs, rotation=20)
        ax.set(title=f"{target} · {MODE_NAMES.get(mode, mode)}", ylabel="top-1 (%)")
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    shared_legend(fig, axes.flat)
    return png_bytes(fig)


def loss_figure(data: ReportData) -> bytes | None:
    """The loss logged in each distilled set's metrics.jsonl against the outer step: one panel per kind of
    loss (KRR-ST and Boost log the KRR loss, MKDT its trajectory-matching loss; they are not comparable)."""
    logged = [d for d in data.distilled if any("loss" in h for h in d.metrics)]
    if not logged:
        return None
    plt = pyplot()
    from matplotlib.ticker import FuncFormatter, LogLocator

    palette = colours([d.label for d in data.distilled], {d.label: d.rows[0]["method"] for d in data.distilled})
    styles = iter(["-", "--", "-.", ":"] * 8)
    line_style = {label: next(styles) for label in dict.fromkeys(d.label for d in logged)}
    kinds: dict[str, list[Any]] = {}
    for d in logged:
        kinds.setdefault(loss_name(d.rows[0]["method"] if d.rows else ""), []).append(d)
    fig, axes = plt.subplots(1, len(kinds), figsize=(6.0 * len(kinds), 3.4), squeeze=False)
    for ax, (name, sets) in zip(axes[0], kinds.items(), strict=True):
        for d in sets:
            points = [(h["step"], h["loss"]) for h in d.metrics if "loss" in h and "step" in h]
            ax.plot(*zip(*points, strict=True), label=d.label, color=palette[d.label], linestyle=line_style[d.label])
        ax.set(xlabel="outer step", ylabel=name, yscale="log", title="distillation loss")
        ax.yaxis.set_minor_locator(LogLocator(subs=(2.0, 3.0, 5.0)))
        for axis_formatter in (ax.yaxis.set_major_formatter, ax.yaxis.set_minor_formatter):
            axis_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        ax.tick_params(axis="y", which="minor", labelsize=8)
        ax.grid(alpha=0.3, which="both")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    return png_bytes(fig)


def teacher_figure(history: list[dict[str, Any]]) -> bytes | None:
    """Barlow Twins loss and online-monitor accuracy per epoch (history.json)."""
    epochs = [h["epoch"] for h in history if "epoch" in h]
    if not epochs:
        return None
    plt = pyplot()
    monitored = any(h.get("monitor_top1") is not None for h in history)  # none: data without labels
    fig, axes = plt.subplots(1, 2 if monitored else 1, figsize=(6.4 if monitored else 3.4, 2.6), squeeze=False)
    ax_loss = axes[0][0]
    ax_loss.plot(epochs, [h.get("loss") for h in history])
    ax_loss.set(xlabel="epoch", ylabel="Barlow Twins loss", title="loss")
    if monitored:
        ax_acc = axes[0][1]
        ax_acc.plot(epochs, [h.get("monitor_top1") for h in history], color="tab:orange")
        ax_acc.set(xlabel="epoch", ylabel="top-1 (%)", title="online monitor")
    for ax in axes[0]:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return png_bytes(fig)


def images_figure(path: Path, count: int) -> bytes:
    """The first images of a distilled set (every stored view for Boost), drawn by `ssdd show`'s code."""
    from ssdd.cli.show import distilled_figure
    from ssdd.distill import load_distilled

    return png_bytes(distilled_figure(load_distilled(path), count, title=False), dpi=90)
