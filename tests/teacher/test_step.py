"""The teacher step's parts: compiling the model and the views, the device-side step log."""

from __future__ import annotations

import shutil

import pytest
import torch

from ssdd.config import ModelConfig
from ssdd.models import build_model
from ssdd.run import compiled as compiled_module
from ssdd.run.compiled import Compiled
from ssdd.teacher.config import TeacherConfig
from ssdd.teacher.step import StepLog, make_views, model_forward, views_maker
from ssdd.teacher.train import BarlowTwinsModel, forward_loss

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


def test_the_teacher_model_compiles_as_its_setting_says(monkeypatch):
    monkeypatch.setattr(compiled_module, "compile_unavailable", lambda device: "no compiler here")
    net = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match=r"^compile=on: torch.compile is unavailable \(no compiler here\); use "
                                         r"compile=off$"):
        model_forward(net, "on", CPU)
    assert model_forward(net, "auto", CUDA).compiled is None
    assert model_forward(net, "auto", CPU).compiled is None and model_forward(net, "off", CPU).compiled is None


def _tiny_model() -> BarlowTwinsModel:
    torch.manual_seed(0)
    backbone = build_model(ModelConfig(name="convnet", width=4, depth=2, feature="pool"), 8)
    return BarlowTwinsModel(backbone, [8, 8], 3)


def _loss_and_grads(forward, model: BarlowTwinsModel) -> tuple[torch.Tensor, list[torch.Tensor]]:
    views = torch.randn(2, 6, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    ssl, monitor, _ = forward_loss(forward, views[0], views[1], labels, TeacherConfig(), None)
    (ssl + monitor).backward()
    return ssl.detach(), [p.grad for p in model.parameters()]


def _compiled_matches_eager(backend: str) -> None:
    eager_model, compiled_model = _tiny_model(), _tiny_model()
    loss, grads = _loss_and_grads(Compiled(eager_model, compile_it=False), eager_model)
    compiled = Compiled(compiled_model, compile_it=True, required=True, backend=backend)
    compiled_loss, compiled_grads = _loss_and_grads(compiled, compiled_model)
    assert compiled.compiled is not None  # it did run compiled
    assert torch.allclose(loss, compiled_loss, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, compiled_grads, strict=True):  # atol: the conv biases before BatchNorm get ~1e-6 noise
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
    for a, b in zip(eager_model.buffers(), compiled_model.buffers(), strict=True):  # BatchNorm's running stats
        assert torch.allclose(a.float(), b.float(), rtol=1e-5, atol=1e-6)


def test_the_compiled_graph_gives_the_eager_loss_and_gradients():
    """Dynamo's graph and autograd's compiled backward (aot_eager: no kernels to build, seconds)."""
    _compiled_matches_eager("aot_eager")


@pytest.mark.slow
@pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "clang++", "c++")), reason="inductor needs a C++ compiler")
def test_inductor_gives_the_eager_loss_and_gradients_on_the_cpu():
    """The kernels the `compile` setting builds (inductor: about 40 s of compiling on 2 CPU cores)."""
    _compiled_matches_eager("inductor")


def test_compiled_fast_views_draw_the_same_numbers_and_give_the_eager_views():
    """The branch-free views through Dynamo (aot_eager: the graphs between the eager random draws)."""
    images = torch.randint(0, 256, (6, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean, std = torch.full((3,), 0.5), torch.full((3,), 0.25)
    compiled = Compiled(make_views, compile_it=True, required=True, backend="aot_eager", what="the augmentations")
    for seed in range(2):
        eager_gen, compiled_gen = torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed)
        eager = make_views(images, TeacherConfig().augment, eager_gen, mean, std, True, False)
        views = compiled(images, TeacherConfig().augment, compiled_gen, mean, std, True, True)
        assert torch.equal(eager_gen.get_state(), compiled_gen.get_state())
        for a, b in zip(eager, views, strict=True):
            assert torch.allclose(a, b, atol=1e-5) and b.is_contiguous(memory_format=torch.channels_last)
    assert compiled.compiled is not None
    assert views_maker("on", CPU, fast=False).compiled is None  # the plain views stay eager


def test_step_log_totals_add_python_floats_in_step_order_and_check_names_the_first_bad_step():
    values = [0.1, 1e8, 0.3, 1e-8]
    log = StepLog(5, CPU)
    for step, value in enumerate(values):
        log.record(step, torch.tensor(value), torch.eye(3)[[0, 1, 1]], torch.tensor([0, 1, 2]))
    expected = 0.0
    for value in torch.tensor(values).tolist():
        expected += value
    assert log.totals(4) == (expected, 8) and log.loss(1) == 1e8
    log.check(4, epoch=0)
    log.record(4, torch.tensor(float("nan")), torch.eye(3), torch.tensor([0, 1, 2]))
    with pytest.raises(FloatingPointError, match=r"^Barlow Twins loss became nan at epoch 3, step 4$"):
        log.check(5, epoch=2)
