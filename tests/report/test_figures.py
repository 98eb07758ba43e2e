"""The report's budget and architecture figures: drawn only when there is a curve, with one shared legend."""

from __future__ import annotations

from pathlib import Path

from ssdd.evaluation.report import summarize
from ssdd.report import figures
from ssdd.report.figures import architecture_figure, budget_figure, reference_line_styles, shared_legend
from ssdd.report.gather import ReportData, TeacherInfo
from ssdd.report.plots import pyplot


def data_for(archs: list[str], budgets: tuple[int, ...] = (100,)) -> ReportData:
    labels = [f"{method}@{n}" for method in ("boost", "random") for n in budgets] + ["no_pretrain", "full_data"]
    rows = [{"label": label, "method": label.split("@")[0],
             "budget": float(label.split("@")[1]) if "@" in label else None, "arch": arch,
             "target": "cifar10", "mode": mode, "seed": seed, "top1": 50.0 + seed + i, "pretrain_s": 1.0,
             "eval_s": 1.0}
            for i, arch in enumerate(archs) for label in labels
            for mode in ("finetune", "linear_probe") for seed in (0, 1)]
    return ReportData(Path("."), rows, summarize(rows), {}, None, TeacherInfo(None, None, None, None), [])


def test_the_architecture_figure_is_drawn_only_for_several_architectures():
    png = architecture_figure(data_for(["convnet", "resnet18", "vit_small"]))
    assert png is not None and png.startswith(b"\x89PNG")
    assert architecture_figure(data_for(["convnet"])) is None


def test_the_budget_figure_is_drawn_only_for_several_budgets():
    png = budget_figure(data_for(["convnet"], budgets=(25, 50, 100)))
    assert png is not None and png.startswith(b"\x89PNG")
    assert budget_figure(data_for(["convnet"])) is None


def test_panels_share_one_legend_with_each_label_once():
    fig, axes = pyplot().subplots(1, 2)
    for ax in axes:
        ax.plot([0, 1], [0, 1], label="boost")
        ax.axhline(0.5, label="no pre-training")
    shared_legend(fig, axes.flat)
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["boost", "no pre-training"]
    assert all(ax.get_legend() is None for ax in axes)
    pyplot().close(fig)


def test_panels_follow_the_configs_order_of_models_targets_and_modes():
    data = data_for(["resnet18", "convnet", "alexnet"])
    assert [p[0] for p in data.panels][::2] == ["alexnet", "convnet", "resnet18"]  # no config: by name
    data.config = {"models": [{"name": "convnet"}, {"name": "resnet18"}], "modes": ["linear_probe", "finetune"]}
    assert data.panels == [("convnet", "cifar10", "linear_probe"), ("convnet", "cifar10", "finetune"),
                           ("resnet18", "cifar10", "linear_probe"), ("resnet18", "cifar10", "finetune"),
                           ("alexnet", "cifar10", "linear_probe"), ("alexnet", "cifar10", "finetune")]
    data.config["targets"] = [{"source": "npz", "path": "data/flowers102.npz"},
                              {"source": "npz", "path": "data/cifar10.npz", "name": "cifar10"}]  # unnamed first
    for row in data.rows[: len(data.rows) // 2]:
        row["target"] = "flowers102"
    data.summary = summarize(data.rows)
    assert [p[1] for p in data.panels][:4] == ["flowers102", "flowers102", "cifar10", "cifar10"]


def _visible_dashes(style: object, length: float = 40.0) -> set[int]:
    """The unit steps along a line where a (offset, (on, off)) dash pattern draws ink."""
    offset, (on, off) = style  # type: ignore[misc]
    return {t for t in range(int(length)) if (t + offset) % (on + off) < on}


def test_equal_reference_lines_take_turns_so_none_is_hidden():
    styles = reference_line_styles({"full_data_same_recipe": 60.0, "full_data": 60.0, "no_pretrain": 40.0}, 20.0)
    first, second = _visible_dashes(styles["full_data_same_recipe"]), _visible_dashes(styles["full_data"])
    assert first and second and not first & second  # each draws where the other does not
    assert styles["no_pretrain"] == ":"  # a line apart keeps its own style
    apart = reference_line_styles({"full_data_same_recipe": 60.0, "full_data": 50.0}, 20.0)
    assert apart == {"full_data_same_recipe": "-", "full_data": "--"}


def test_the_accuracy_figure_labels_every_reference_line(monkeypatch):
    drawn = []
    monkeypatch.setattr(figures, "png_bytes", lambda fig, dpi=100: drawn.append(fig) or b"")
    data = data_for(["convnet"])  # no_pretrain and full_data rows of equal accuracy
    figures.accuracy_figure(data)
    ax = drawn[0].axes[0]
    lines = {line.get_label(): line for line in ax.get_lines() if line.get_label().startswith(("full", "no pre"))}
    assert len(lines) == 2 and len({line.get_ydata()[0] for line in lines.values()}) == 1
    assert all(line.get_visible() for line in lines.values())
    patterns = [line._dash_pattern for line in lines.values()]  # (offset, dashes) as matplotlib draws them
    assert all(seq is not None and len(seq) == 2 for _, seq in patterns), patterns
    inks = [_visible_dashes((offset, tuple(seq))) for offset, seq in patterns]
    assert not inks[0] & inks[1]  # interleaved dashes, not one line over the other
    pyplot().close(drawn[0])


def test_an_evaluation_without_reference_rows_draws_without_a_legend_warning(monkeypatch, recwarn):
    """no_pretrain=false and full_data off: the accuracy panels have no reference line to name."""
    drawn = []
    monkeypatch.setattr(figures, "png_bytes", lambda fig, dpi=100: drawn.append(fig) or b"")
    data = data_for(["convnet"])
    data.rows[:] = [r for r in data.rows if r["label"] not in ("no_pretrain", "full_data")]
    data.summary[:] = summarize(data.rows)
    figures.accuracy_figure(data)
    assert not [w for w in recwarn if "No artists with labels" in str(w.message)]
    assert drawn[0].axes[0].get_legend() is None
    pyplot().close(drawn[0])


def test_a_methods_colour_that_matplotlib_does_not_know_gets_another_with_a_note(capsys):
    """A plugin's `colour` is not checked when it registers: the report gives its sets another colour and says
    why, instead of failing after the evaluation ran."""
    from ssdd.distill.registry import DistillMethod, register_method, unregister_method
    from ssdd.report.figures import EXTRA_COLOURS, colours

    register_method(DistillMethod("oddly_coloured", lambda ctx: None, lambda s, m: (s, m), colour="notacolour"))
    try:
        assert colours(["oddly_coloured@10"], {"oddly_coloured@10": "oddly_coloured"}) == {
            "oddly_coloured@10": EXTRA_COLOURS[0]}
    finally:
        unregister_method("oddly_coloured")
    assert "method oddly_coloured's colour 'notacolour' is not a matplotlib colour" in capsys.readouterr().err
    from ssdd.distill.registry import available_methods, get_method
    from ssdd.report.figures import REFERENCE_STYLE

    used = {get_method(name).colour for name in available_methods()} | {c for _, c, _ in REFERENCE_STYLE.values()}
    assert not used & set(EXTRA_COLOURS)  # a variant's colour is never a method's or a reference line's
