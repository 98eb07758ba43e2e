"""Boost at smoke scale: storage = the hand sum within budget, no augmented target stored, every view
rebuilt at load time, ablations (all off = KRR-ST-shaped), resume, clear errors, distill + evaluate."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ssdd.artifacts.storage import BudgetError
from ssdd.cli import main
from ssdd.config import load_config
from ssdd.distill import load_distilled
from ssdd.distill.boost import BoostConfig, boost_samples
from ssdd.distill.budget import samples_for_budget
from ssdd.distill.config import DistillConfig
from ssdd.distill.run import run_distill
from ssdd.distill.views import VIEWS

pytestmark = pytest.mark.usefixtures("one_thread")

# 16 px images, teacher d = 8; U = 8 bases at r = 8, V = 4, h = 4, K = 3 extra views
BOOST = ["data.resolution=16", "budget=3", "method=boost", "outer.steps=6", "outer.batch_size=16", "outer.lr=0.01",
         "pool.size=2", "pool.max_steps=5", "outer.model.width=4", "outer.model.depth=2", "device=cpu", "log_every=2",
         "checkpoint_every=3", "boost.image_bases=8", "boost.image_resolution=8", "boost.target_bases=4",
         "boost.approx_steps=50"]
U, R, V, D, H, K = 8, 8, 4, 8, 4, 3
FIXED = U * 3 * R * R + 3 * R * R + V * D + D + K * (V * H + H + H * V + V)
M = (3 * 768 - FIXED) // (U + V)  # 34


def boost(npz: Path, teacher: Path, out: Path, *extra: str) -> DistillConfig:
    return load_config(DistillConfig, None, [f"data.path={npz}", f"teacher={teacher}", f"out_dir={out}", *BOOST,
                                             *extra])


@pytest.fixture(scope="module")
def default_run(tmp_path_factory) -> tuple[Path, Path, Path]:
    """One default Boost run shared by the tests that only read it: (npz, teacher, artifact folder)."""
    from conftest import make_npz, make_teacher

    root = tmp_path_factory.mktemp("boost")
    npz, teacher = make_npz(root / "tiny.npz"), make_teacher(root / "teacher")
    run_distill(boost(npz, teacher, root / "b"), show_progress=False)
    return npz, teacher, root / "b"


def test_storage_is_the_hand_sum_and_no_augmented_target_is_stored(default_run):
    loaded = load_distilled(default_run[2])
    report = loaded.storage()
    assert loaded.manifest["m"] == M == 34
    assert report.floats == FIXED + M * (U + V)
    assert report.image_equivalents <= 3
    assert loaded.manifest["storage"]["floats"] == report.floats
    split = loaded.manifest["storage_split"]
    assert split["fixed_image_equivalents"] * 768 == pytest.approx(FIXED)
    assert sum(v for k, v in split.items() if "_image_equivalents" not in k) == pytest.approx(report.image_equivalents)
    # targets: one (m, V) coefficient matrix; every other per-sample tensor is the image coefficients
    per_sample = {k: tuple(v.shape) for k, v in loaded.stored.items() if v.ndim >= 2 and M in v.shape}
    assert per_sample == {"image_coefficients": (M, U), "target_coefficients": (M, V)}
    assert not any("view" in k for k in loaded.stored)
    assert {k.split(".")[1] for k in loaded.stored if k.startswith("approx.")} == {"rot90", "rot180", "rot270"}
    errors = loaded.manifest["approximation_error"]
    assert set(errors) == {"rot90", "rot180", "rot270"} and all(0 <= e["relative_error"] for e in errors.values())
    assert loaded.manifest["training_pairs"] == 4 * M


def test_loading_rebuilds_every_view(default_run):
    loaded = load_distilled(default_run[2])
    images, targets = loaded.training_pairs()
    assert images.shape == (4 * M, 3, 16, 16) and targets.shape == (4 * M, D)
    base = images[:M]
    for k, name in enumerate(["identity", "rot90", "rot180", "rot270"]):
        assert torch.equal(images[k * M : (k + 1) * M], VIEWS[name](base)), name
    s = loaded.stored
    low = (s["image_coefficients"] @ s["image_bases"] + s["image_mean"]).view(M, 3, R, R)
    assert torch.allclose(base, torch.nn.functional.interpolate(low, size=16, mode="bilinear"), atol=1e-6)
    y0 = s["target_coefficients"] @ s["target_bases"] + s["target_mean"]
    assert torch.allclose(targets[:M], y0, atol=1e-6)
    assert not torch.allclose(targets[M : 2 * M], y0, atol=1e-4)  # the network adds a learned shift


def test_everything_off_is_a_krr_st_shaped_artifact(tiny_npz, tiny_teacher, tmp_path):
    off = ("budget=10", "boost.image_bases=0", "boost.target_bases=0", "boost.augmentations=[identity]",
           "boost.approximation=off")
    run_distill(boost(tiny_npz, tiny_teacher, tmp_path / "off", *off), show_progress=False)
    run_distill(boost(tiny_npz, tiny_teacher, tmp_path / "krr", "method=krr_st", "budget=10"), show_progress=False)
    boost_set, krr_set = load_distilled(tmp_path / "off"), load_distilled(tmp_path / "krr")
    shapes = {k: tuple(v.shape) for k, v in boost_set.stored.items()}
    assert shapes == {k: tuple(v.shape) for k, v in krr_set.stored.items()}
    m = samples_for_budget(10, (3, 16, 16), D)
    assert shapes == {"images": (m, 3, 16, 16), "targets": (m, D)}
    assert boost_set.storage().floats == krr_set.storage().floats
    images, targets = boost_set.training_pairs()
    assert images.shape == (m, 3, 16, 16) and targets.shape == (m, D)


@pytest.mark.parametrize("name, overrides, stored_extra", [
    ("no_parameterization", ["boost.image_bases=0", "boost.target_bases=0", "budget=10"], {"images", "targets"}),
    ("no_augmentation", ["boost.augmentations=[identity]"], {"image_coefficients", "target_coefficients"}),
    ("no_approximation", ["boost.approximation=off"], {"view_target_coefficients"}),
    ("joint", ["boost.approximation=joint"], {"approx.rot90.w1"}),
    ("representation_space", ["boost.approx_space=representations", "boost.approximation=joint"],
     {"approx.rot180.w2"}),
    ("random_init", ["boost.basis_init=random", "boost.coefficient_init=random", "boost.learn_means=true"],
     {"image_bases"}),
    ("kmeans_identity_kernel_crop_flip", ["boost.selection=kmeans", "boost.kernel_views=identity",
                                          "boost.real_views=crop_flip", "boost.augmentations=[identity,hflip]"],
     {"approx.hflip.b2"}),
])
def test_ablations_store_what_they_should_within_budget(name, overrides, stored_extra, tiny_npz, tiny_teacher,
                                                        tmp_path):
    cfg = boost(tiny_npz, tiny_teacher, tmp_path / name, *overrides)
    distilled = run_distill(cfg, show_progress=False)
    assert stored_extra <= set(distilled.stored)
    report = distilled.storage()
    assert report.image_equivalents <= cfg.budget
    m, fixed, per_sample = boost_samples(cfg.boost, (3, 16, 16), D, cfg.budget)
    assert distilled.manifest["m"] == m and report.floats == fixed + m * per_sample
    images, targets = load_distilled(tmp_path / name).training_pairs()
    views = len(cfg.boost.augmentations)
    assert images.shape[0] == targets.shape[0] == m * views
    assert torch.isfinite(images).all() and torch.isfinite(targets).all()


def test_no_approximation_costs_more_per_sample_than_networks():
    b = BoostConfig(image_bases=8, image_resolution=8, target_bases=4, approx_hidden=4)
    with_nets = boost_samples(b, (3, 16, 16), D, 3)
    b.approximation = "off"
    without = boost_samples(b, (3, 16, 16), D, 3)
    assert without[2] == with_nets[2] + K * V  # every extra view's codes
    assert without[0] < with_nets[0]


def test_resume_reproduces_an_uninterrupted_run(default_run, tmp_path):
    npz, teacher, _ = default_run
    full = load_distilled(default_run[2])
    assert run_distill(boost(npz, teacher, tmp_path / "split", "stop_after_steps=4"), show_progress=False) is None
    resumed = run_distill(boost(npz, teacher, tmp_path / "split"), resume=True, show_progress=False)
    assert set(full.stored) == set(resumed.stored)
    for key in full.stored:
        assert torch.equal(full.stored[key], resumed.stored[key]), key


@pytest.mark.parametrize("overrides, message", [
    (["budget=2"], "holds no sample"),
    (["boost.target_bases=9"], "target_bases must lie in"),
    (["boost.image_resolution=32"], "image_resolution must lie in"),
    (["boost.approximation=sometimes"], "approximation must be one of"),
    (["boost.augmentations=[rot90]"], "start with 'identity'"),
])
def test_bad_boost_settings_are_one_line_errors(overrides, message, tiny_npz, tiny_teacher, tmp_path, capsys):
    args = [f"data.path={tiny_npz}", f"teacher={tiny_teacher}", f"out_dir={tmp_path / 'x'}", *BOOST, *overrides]
    assert main(["distill", "--no-progress", *args]) == 2
    assert message in capsys.readouterr().err


def test_m_follows_the_budget_formula():
    b = BoostConfig()  # the paper's setting: U = V = 200, r = 16, CIFAR 32 px, d = 512, h = 4
    m, fixed, per_sample = boost_samples(b, (3, 32, 32), 512, 100)
    approx = 3 * (200 * 4 + 4 + 4 * 200 + 200)
    assert fixed == 200 * 768 + 768 + 200 * 512 + 512 + approx
    assert per_sample == 400
    assert m == math.floor((100 * 3072 - fixed) / 400)
    with pytest.raises(BudgetError, match="holds no sample"):
        boost_samples(b, (3, 32, 32), 512, 80)


def test_boost_distill_then_evaluate_end_to_end(default_run, tmp_path):
    npz, teacher, artifact = default_run
    out = tmp_path / "eval"
    code = main(["evaluate", "--no-progress", "-d", str(artifact), "--", f"teacher={teacher}",
                 f"out_dir={out}", f"source.path={npz}", "seeds=1", "no_pretrain=false",
                 "full_data.enabled=false", "full_data.same_recipe=false",
                 "models=[{name: convnet, width: 4, depth: 2}]",
                 f"targets=[{{source: npz, path: {npz}, name: tiny}}]", "pretrain.epochs=2",
                 "finetune.small_iterations=3", "probe.iterations=5", "cka_images=16", "device=cpu"])
    assert code == 0
    summary = (out / "summary.md").read_text()
    assert "boost@3" in summary and f"{M} / {4 * M}" in summary


def test_show_draws_every_view_and_the_loss(default_run, tmp_path, capsys):
    assert main(["show", str(default_run[2]), "--out", str(tmp_path / "pic"), "-n", "3"]) == 0
    written = capsys.readouterr().out.split()
    assert written == [str(tmp_path / "pic" / "images.png"), str(tmp_path / "pic" / "loss.png")]
    from PIL import Image

    with Image.open(tmp_path / "pic" / "images.png") as picture:
        assert picture.size[0] > picture.size[1] * 0.8  # four view columns for three rows
    assert main(["show", str(tmp_path / "missing")]) == 2


def test_photometric_views_distil_and_record_their_parameters(tiny_npz, tiny_teacher, tmp_path):
    views = "boost.augmentations=[identity,brightness_1.4,blur_3_1.0,rot90]"
    run_distill(boost(tiny_npz, tiny_teacher, tmp_path / "p", views), show_progress=False)
    loaded = load_distilled(tmp_path / "p")
    params = loaded.manifest["view_parameters"]
    assert params["blur_3_1.0"] == {"op": "gaussian_blur", "kernel": 3, "sigma": 1.0, "exact_permutation": False}
    assert params["brightness_1.4"]["factor"] == 1.4 and params["rot90"]["exact_permutation"]
    images, targets = loaded.training_pairs()
    assert images.shape[0] == targets.shape[0] == 4 * loaded.manifest["m"]
    assert loaded.storage().image_equivalents <= 3
