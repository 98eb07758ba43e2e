"""A source without labels: the teacher trains on it (no monitor, no probe), the methods distil it and the
evaluation pre-trains on it; what needs labels (a target, method=random_supervised) says so in one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import make_npz
from ssdd.cli import main
from ssdd.data import save_npz

pytestmark = pytest.mark.slow


def test_an_unlabelled_source_goes_through_teacher_distill_evaluate_and_report(tmp_path, one_thread, capsys):
    labelled = np.load(make_npz(tmp_path / "labelled.npz", n_train=64, n_test=32))
    source = save_npz(tmp_path / "unlabelled.npz", {"train": (labelled["x_train"], None),
                                                   "test": (labelled["x_test"], None)})
    data = ["data.source=npz", f"data.path={source}", "data.resolution=16", "device=cpu"]
    assert main(["teacher", "--no-progress", *data, f"out_dir={tmp_path / 't'}", "probe_every=1",
                 "model={name: convnet, width: 4, depth: 2, feature: pool}", "projector=[16,16]", "optim.epochs=2",
                 "optim.batch_size=16", "optim.warmup_epochs=0"]) == 0
    out = capsys.readouterr().out
    assert "linear probe: not measured (split train has no labels)" in out and "monitor" not in out
    manifest = json.loads((tmp_path / "t" / "teacher" / "manifest.json").read_text())
    assert manifest["linear_probe"]["top1"] is None and manifest["monitor_top1"] is None
    teacher = f"teacher={tmp_path / 't' / 'teacher'}"
    assert main(["distill", "-c", "demo_distill", "--no-progress", *data, teacher, "budget=10", "outer.steps=2",
                 "outer.batch_size=16", f"out_dir={tmp_path / 'krr'}"]) == 0
    assert main(["distill", "--no-progress", *data, teacher, "method=random", "budget=10",
                 f"out_dir={tmp_path / 'random'}"]) == 0
    assert main(["distill", "--no-progress", *data, teacher, "method=random_supervised", "budget=10",
                 f"out_dir={tmp_path / 'sup'}"]) == 2
    assert "unlabelled.npz[train] has no labels, and method=random_supervised needs them" in capsys.readouterr().err
    evaluate = ["evaluate", "--no-progress", teacher, "device=cpu", f"source.path={source}", "seeds=1",
                "modes=[linear_probe]", "models=[{name: convnet, width: 4, depth: 2}]", "probe.iterations=3",
                "pretrain.max_iterations=2", "full_data.epochs=1", "full_data.batch_size=16",
                "full_data.same_recipe=false", "cka_images=8", "--distilled", str(tmp_path / "krr"),
                str(tmp_path / "random")]
    assert main([*evaluate, f"targets=[{{source: npz, path: {source}}}]", f"out_dir={tmp_path / 'x'}"]) == 2
    assert "has no labels, and a target (fine-tuning and the probe) needs them" in capsys.readouterr().err
    assert main([*evaluate, f"targets=[{{source: npz, path: {tmp_path / 'labelled.npz'}}}]",
                 f"out_dir={tmp_path / 'e'}"]) == 0
    assert main(["report", str(tmp_path / "e")]) == 0
    assert "**linear probe**: not measured: split train has no labels" in (tmp_path / "e" / "report.md").read_text()
    from ssdd.data.validate import describe_data

    assert describe_data(source).endswith("test 32 (no labels), train 64 (no labels) images at 16x16 px")


def test_a_teacher_on_a_train_split_without_labels_needs_no_test_split(tmp_path):
    from ssdd.config import load_config
    from ssdd.teacher.config import TeacherConfig
    from ssdd.teacher.validate import check_teacher_data

    x = np.zeros((8, 4, 4, 3), np.uint8)
    only_train = save_npz(tmp_path / "train_only.npz", {"train": (x, None)})
    assert check_teacher_data(load_config(TeacherConfig, None, [f"data.path={only_train}"])) == 8
    labelled = save_npz(tmp_path / "labelled.npz", {"train": (x, np.arange(8) % 2)})
    with pytest.raises(ValueError, match="split 'test' does not exist"):  # its probe reads a test split
        check_teacher_data(load_config(TeacherConfig, None, [f"data.path={labelled}"]))
