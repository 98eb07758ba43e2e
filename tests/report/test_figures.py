"""The report's architecture figure: drawn for an evaluation of several architectures only."""

from __future__ import annotations

from pathlib import Path

from ssdd.evaluation.report import summarize
from ssdd.report.figures import architecture_figure
from ssdd.report.gather import ReportData, TeacherInfo


def data_for(archs: list[str]) -> ReportData:
    rows = [{"label": label, "method": label.split("@")[0], "budget": 100.0 if "@" in label else None, "arch": arch,
             "target": "cifar10", "mode": mode, "seed": seed, "top1": 50.0 + seed + i, "pretrain_s": 1.0,
             "eval_s": 1.0}
            for i, arch in enumerate(archs) for label in ("boost@100", "random@100", "no_pretrain", "full_data")
            for mode in ("finetune", "linear_probe") for seed in (0, 1)]
    return ReportData(Path("."), rows, summarize(rows), {}, None, TeacherInfo(None, None, None, None), [])


def test_the_architecture_figure_is_drawn_only_for_several_architectures():
    png = architecture_figure(data_for(["convnet", "resnet18", "vit_small"]))
    assert png is not None and png.startswith(b"\x89PNG")
    assert architecture_figure(data_for(["convnet"])) is None
