"""KRR-ST's pre-training of labelled sets: the loss falls, the lr drops 10x at half, and who gets it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from ssdd.config import ModelConfig
from ssdd.evaluation import cell
from ssdd.evaluation.config import EvaluateConfig, PretrainConfig, SupervisedPretrainConfig
from ssdd.evaluation.pretrain import steps_per_epoch
from ssdd.evaluation.supervised import lr_drop_step, pretrain_supervised, uses_supervised_recipe

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny networks: thread hand-off dominates on a busy machine


class Tiny(nn.Module):
    """A flatten + linear encoder that counts its forward passes."""

    feature_dim = 8

    def __init__(self, size: int = 8) -> None:
        super().__init__()
        self.layer = nn.Linear(3 * size * size, self.feature_dim)
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.layer(x.flatten(1))


def separable(n: int = 48, classes: int = 3, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Class c lights channel c: images in [0, 1], labels 0..classes-1."""
    gen = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % classes
    images = 0.1 * torch.rand(n, 3, size, size, generator=gen)
    images[torch.arange(n), labels] += 0.8
    return images, labels


def run(cfg: PretrainConfig, seed: int = 0, n: int = 48) -> tuple[Tiny, list[float]]:
    model = Tiny()
    images, labels = separable(n)
    losses = pretrain_supervised(model, images, labels, torch.full((3,), 0.5), torch.full((3,), 0.25), cfg,
                                 torch.Generator().manual_seed(seed), num_classes=3)
    return model, losses


def test_the_recipe_learns_a_separable_set_with_dsa():
    torch.manual_seed(0)
    cfg = PretrainConfig(epochs=40, batch_size=16, supervised=SupervisedPretrainConfig(lr=0.05))
    model, losses = run(cfg)
    assert len(losses) == 40 and model.calls == 40 * 3
    assert losses[-1] < 0.5 * losses[0]


def test_the_recipe_trains_a_batchnorm_convnet():
    from ssdd.models import build_model

    torch.manual_seed(0)
    backbone = build_model(ModelConfig(name="convnet", width=4, depth=2), 8)
    images, labels = separable(24)
    losses = pretrain_supervised(backbone, images, labels, torch.full((3,), 0.5), torch.full((3,), 0.25),
                                 PretrainConfig(epochs=30, batch_size=8, supervised=SupervisedPretrainConfig(lr=0.05)),
                                 torch.Generator().manual_seed(0), num_classes=3)
    assert len(losses) == 30 and losses[-1] < 0.5 * losses[0]


def test_same_seed_same_losses_and_augmentation_changes_them():
    cfg = PretrainConfig(epochs=5, batch_size=16)
    torch.manual_seed(0)
    _, first = run(cfg)
    torch.manual_seed(0)
    _, again = run(cfg)
    torch.manual_seed(0)
    _, plain = run(PretrainConfig(epochs=5, batch_size=16, supervised=SupervisedPretrainConfig(augment="none")))
    assert first == again and first != plain


def _recorded_lrs(monkeypatch: pytest.MonkeyPatch, cfg: PretrainConfig, n: int = 20) -> list[float]:
    lrs: list[float] = []
    step = torch.optim.SGD.step

    def recording(self: torch.optim.SGD, *args: object, **kwargs: object) -> object:
        lrs.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", recording)
    torch.manual_seed(0)
    run(cfg, n=n)
    return lrs


def _multistep_reference(epochs: int, per_epoch: int, lr: float) -> list[float]:
    """KRR-ST's schedule: MultiStepLR(milestones=[epochs // 2], gamma=0.1), stepped once per epoch."""
    optimizer = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=[epochs // 2], gamma=0.1)
    lrs = []
    for _ in range(epochs):
        lrs += [optimizer.param_groups[0]["lr"]] * per_epoch
        optimizer.step()
        schedule.step()
    return lrs


@pytest.mark.parametrize("epochs", [10, 7])
def test_lr_drops_tenfold_after_half_of_the_epochs_as_multisteplr(monkeypatch: pytest.MonkeyPatch, epochs: int):
    reference = _multistep_reference(epochs, 3, 0.01)  # before SGD.step is recorded
    lrs = _recorded_lrs(monkeypatch, PretrainConfig(epochs=epochs, batch_size=8))  # 20 images: 3 steps an epoch
    assert len(lrs) == epochs * 3
    assert lrs == pytest.approx(reference)
    assert lrs[0] == pytest.approx(10 * lrs[-1])


def test_with_an_iteration_cap_the_drop_is_at_half_of_the_steps_run(monkeypatch: pytest.MonkeyPatch):
    lrs = _recorded_lrs(monkeypatch, PretrainConfig(epochs=100, batch_size=8, max_iterations=11))
    assert len(lrs) == 11
    assert lrs == pytest.approx([0.01] * 5 + [0.001] * 6)


def test_steps_per_epoch_skip_a_last_batch_of_one():
    assert steps_per_epoch(20, 8) == 3 and steps_per_epoch(17, 8) == 2 and steps_per_epoch(16, 8) == 2
    assert lr_drop_step(20, PretrainConfig(epochs=1000, batch_size=256)) == 500
    assert lr_drop_step(300, PretrainConfig(epochs=1000, batch_size=256, max_iterations=1000)) == 500


def test_float_targets_are_refused():
    with pytest.raises(ValueError, match="integer class labels"):
        pretrain_supervised(Tiny(), torch.rand(4, 3, 8, 8), torch.rand(4), torch.zeros(3), torch.ones(3),
                            PretrainConfig(), torch.Generator(), num_classes=3)


# ----------------------------------------------------------------------------- who gets the recipe
def test_uses_supervised_recipe_for_labels_only_and_not_under_same():
    labels, targets = torch.tensor([0, 1]), torch.rand(2, 4)
    assert uses_supervised_recipe(labels, PretrainConfig())
    assert not uses_supervised_recipe(targets, PretrainConfig())
    assert not uses_supervised_recipe(labels, PretrainConfig(supervised=SupervisedPretrainConfig(recipe="same")))


@pytest.mark.parametrize(("integer", "recipe", "expected"), [
    (True, "krr_st", "supervised"), (False, "krr_st", "pairs"), (True, "same", "pairs"), (False, "same", "pairs")])
def test_protocol_dispatch(monkeypatch: pytest.MonkeyPatch, integer: bool, recipe: str, expected: str):
    targets = torch.tensor([0, 1, 2, 0]) if integer else torch.rand(4, 5)
    fake = SimpleNamespace(training_pairs=lambda: (torch.rand(4, 3, 8, 8), targets),
                           manifest={"normalization": {"mean": [0.5] * 3, "std": [0.25] * 3}, "num_classes": 3})
    called: list[str] = []
    monkeypatch.setattr(cell, "load_distilled", lambda path: fake)
    monkeypatch.setattr(cell, "build_model", lambda cfg, resolution: Tiny())
    monkeypatch.setattr(cell, "pretrain_supervised", lambda *a, **k: called.append("supervised"))
    monkeypatch.setattr(cell, "pretrain_on_pairs", lambda *a, **k: called.append("pairs"))
    cfg = EvaluateConfig(pretrain=PretrainConfig(supervised=SupervisedPretrainConfig(recipe=recipe)))
    source = cell.PretrainSource("set@4", "random_supervised", 4, {"path": "unused"})
    cell.pretrain_network(source, ModelConfig(name="convnet"), cfg, None, None, 8, 0, torch.device("cpu"))
    assert called == [expected]


# ----------------------------------------------------------------------------- settings
@pytest.mark.parametrize(("override", "message"), [
    ("pretrain.supervised.recipe=krr", "pretrain.supervised.recipe='krr': must be one of krr_st, same"),
    ("pretrain.supervised.augment=flip", "pretrain.supervised.augment='flip': must be one of dsa, none"),
    ("pretrain.supervised.lr=0", "pretrain.supervised.lr=0.0: must be a finite number above 0"),
    ("pretrain.supervised.lr_drop_at=1.5", "pretrain.supervised.lr_drop_at=1.5: must be a probability in [0, 1]"),
])
def test_bad_supervised_settings_are_one_line_errors(override: str, message: str):
    from ssdd.config import ConfigError, load_config
    from ssdd.evaluation.validate import check_evaluate_settings

    cfg = load_config(EvaluateConfig, None, [override])
    with pytest.raises(ConfigError) as caught:
        check_evaluate_settings(cfg)
    assert str(caught.value) == message


def test_the_new_settings_default_to_krr_st_and_their_legacy_values_cover_them():
    from ssdd.config import config_to_dict
    from ssdd.evaluation.config import LEGACY_VALUES
    from ssdd.run.folder import config_hash, flatten

    cfg = config_to_dict(EvaluateConfig())
    added = {k: v for k, v in flatten(cfg).items() if k.startswith("pretrain.supervised.")}
    assert added["pretrain.supervised.recipe"] == "krr_st" and set(added) <= set(LEGACY_VALUES)
    old = config_to_dict(EvaluateConfig())
    del old["pretrain"]["supervised"]
    legacy = config_to_dict(EvaluateConfig(pretrain=PretrainConfig(supervised=SupervisedPretrainConfig(recipe="same"))))
    assert config_hash(legacy, legacy=LEGACY_VALUES) == config_hash(old, legacy=LEGACY_VALUES)
    assert config_hash(cfg, legacy=LEGACY_VALUES) != config_hash(old, legacy=LEGACY_VALUES)
