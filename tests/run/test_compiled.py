"""torch.compile behind an auto | on | off setting: the switch, what makes it unavailable, a failed compile."""

from __future__ import annotations

import pytest
import torch

from ssdd.run import compiled as compiled_module
from ssdd.run.compiled import Compiled, compiled, switch

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.mark.parametrize(("setting", "cpu", "cuda"), [("auto", False, True), ("on", True, True), (True, True, True),
                                                      ("off", False, False), (False, False, False)])
def test_switch_is_on_on_cuda_only_for_auto(setting, cpu, cuda):
    assert (switch(setting, "fast", CPU), switch(setting, "fast", CUDA)) == (cpu, cuda)


def test_switch_refuses_other_values_in_one_line():
    with pytest.raises(ValueError, match=r"^fast='fastest': must be one of auto, on, off$"):
        switch("fastest", "fast", CPU)


def test_compile_unavailable_names_what_is_missing(monkeypatch):
    monkeypatch.setattr(compiled_module.shutil, "which", lambda name: None)
    monkeypatch.delenv("CXX", raising=False)
    assert "no C++ compiler" in compiled_module.compile_unavailable(CPU)
    import torch.utils._triton

    monkeypatch.setattr(torch.utils._triton, "has_triton", lambda: False)
    assert "Triton" in compiled_module.compile_unavailable(CUDA)


def test_a_failed_compile_is_one_line_when_required_and_a_warning_otherwise(capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("the backend broke\nand said more on other lines")

    net = torch.nn.Linear(2, 2)
    x = torch.ones(1, 2)
    required = Compiled(net, compile_it=False, required=True)
    required.compiled = broken
    with pytest.raises(RuntimeError, match=r"^compile=on: torch.compile failed on the model \(the backend broke\); "
                                           r"use compile=off$"):
        required(x)
    tolerant = Compiled(net, compile_it=False)
    tolerant.compiled = broken
    assert torch.equal(tolerant(x), net(x)) and tolerant.compiled is None  # eager from now on
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "torch.compile failed on the model (the backend broke)" in err[0]


def test_each_new_call_signature_is_checked_like_a_first_call(capsys):
    """torch.compile builds a graph per signature (grad mode, a module's train/eval mode, shapes): a compile that
    fails at a later signature (the pool's training step after its eval forwards) is caught like a first one,
    in the setting's own words; a signature that ran is not checked again."""
    calls = []

    def fails_in_training(module, x):
        calls.append(module.training)
        if module.training:
            raise RuntimeError("no graph for training")
        return module(x)

    net, x = torch.nn.Linear(2, 2), torch.ones(1, 2)
    required = compiled(lambda m, v: m(v), "off", CPU, "the pool members", key="outer.compile", who="ssdd distill")
    assert required.compiled is None
    required = Compiled(lambda m, v: m(v), compile_it=False, required=True, what="the pool members",
                        key="outer.compile", who="ssdd distill")
    required.compiled = fails_in_training
    net.eval()
    required(net, x)
    required(net, x)
    net.train()
    with pytest.raises(RuntimeError, match=r"^outer.compile=on: torch.compile failed on the pool members \(no graph "
                                           r"for training\); use outer.compile=off$"):
        required(net, x)
    tolerant = Compiled(lambda m, v: m(v), compile_it=False, what="the pool members", key="outer.compile",
                        who="ssdd distill")
    tolerant.compiled = fails_in_training
    net.eval()
    tolerant(net, x)
    net.train()
    assert torch.equal(tolerant(net, x), net(x)) and tolerant.compiled is None
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["ssdd distill: warning: torch.compile failed on the pool members (no graph for training); it runs "
                   "eagerly (outer.compile=off skips the attempt)"]
    assert calls == [False, False, True, False, True]


def test_own_code_is_the_same_function_with_a_code_object_of_its_own():
    from ssdd.run.compiled import own_code

    offset = 1

    def scaled(x: int, factor: int = 2, *, plus: int = 0) -> int:
        """doc"""
        return x * factor + plus + offset  # a closure

    copy = own_code(scaled, "scaled_copy")
    assert copy(3) == scaled(3) == 7 and copy(3, factor=5, plus=1) == 17  # defaults and keyword defaults kept
    assert copy.__doc__ == "doc" and copy.__annotations__ == scaled.__annotations__
    assert copy.__code__ is not scaled.__code__ and copy.__name__ == copy.__code__.co_name == "scaled_copy"
    assert own_code(scaled, "another").__code__ is not copy.__code__
