"""torch.compile behind an auto | on | off setting: the teacher's `compile`, distillation's `outer.compile` and the
evaluation's `compile`.

`compiled(fn, setting, device, what, key)` returns a `Compiled`, which calls `fn` through torch.compile when the
setting asks for it (auto = on on CUDA where torch.compile works). A compile that fails is a one-line error when
the setting is `on`, and otherwise a one-line warning and the eager `fn` from then on, so a run does not stop
because an optional fast path could not be built. That covers the forward: a backward is compiled at its first
backward pass, outside the call, and a failure there surfaces as its own error.
"""

from __future__ import annotations

import os
import shutil
import sys
import types
from collections.abc import Callable, Hashable
from typing import Any

import torch

from ssdd.run.runtime import gpu_path


def switch(setting: object, key: str, device: torch.device) -> bool:
    """Whether an auto | on | off fast-path setting is on for `device` (auto = on on CUDA only)."""
    return gpu_path(setting, key, device) != "off"


def compile_unavailable(device: torch.device) -> str | None:
    """Why torch.compile cannot build kernels for `device` here, or None when it can."""
    try:
        import torch._dynamo

        if not torch._dynamo.is_dynamo_supported():
            return f"TorchDynamo does not support Python {sys.version_info.major}.{sys.version_info.minor} here"
    except ImportError as exc:  # a torch built without it
        return f"torch._dynamo cannot be imported ({exc})"
    if device.type == "cuda":
        from torch.utils._triton import has_triton

        return None if has_triton() else "Triton, which torch.compile needs on CUDA, is not installed"
    if device.type == "cpu" and not any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "clang++", "c++")
                                        if c):
        return "no C++ compiler (g++, clang++ or $CXX), which torch.compile needs on the CPU, was found"
    return None


def own_code(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    """A copy of the plain function `fn` with a code object of its own, named `name`. torch.compile keeps its graphs,
    and its limit on how many it builds (`torch._dynamo.config.recompile_limit`, 8), per code object: a call site
    that compiles a copy of its own (one per architecture of an evaluation) neither shares that limit with the
    others nor makes them recompile."""
    code = fn.__code__.replace(co_name=name, co_qualname=name)
    copy = types.FunctionType(code, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    copy.__kwdefaults__ = fn.__kwdefaults__
    copy.__doc__, copy.__annotations__, copy.__module__ = fn.__doc__, dict(fn.__annotations__), fn.__module__
    return copy


def call_signature(args: tuple[Any, ...]) -> Hashable:
    """What makes torch.compile build another graph for a call: grad mode, each module's train/eval mode and
    each tensor's shape, dtype and whether it needs a gradient (a new signature is checked like a first call)."""
    parts: list[Hashable] = [torch.is_grad_enabled()]
    for arg in args:
        if isinstance(arg, torch.nn.Module):
            parts.append(("module", type(arg).__name__, arg.training))
        elif isinstance(arg, torch.Tensor):
            parts.append((tuple(arg.shape), arg.dtype, arg.requires_grad))
        elif isinstance(arg, (bool, str)) or arg is None:  # a switch inside fn: a graph per value
            parts.append(arg)
        else:
            parts.append(type(arg).__name__)
    return tuple(parts)


class Compiled:
    """Calls `fn` through torch.compile when asked. A failure to compile (seen at the first call of each
    signature: torch.compile builds a graph per signature) is a one-line error when compiling was required
    (`key`=on), else a one-line warning and the eager `fn` from then on."""

    def __init__(self, fn: Callable[..., Any], compile_it: bool, required: bool = False, backend: str = "inductor",
                 what: str = "the model", key: str = "compile", who: str = "ssdd teacher") -> None:
        self.fn, self.what, self.key, self.who = fn, what, key, who
        self.compiled: Callable[..., Any] | None = torch.compile(fn, backend=backend) if compile_it else None
        self.required = required
        self.checked: set[Hashable] = set()  # the call signatures that compiled and ran

    def __call__(self, *args: Any) -> Any:
        if self.compiled is None:
            return self.fn(*args)
        signature = call_signature(args)
        if signature in self.checked:
            return self.compiled(*args)
        try:
            out = self.compiled(*args)
        except (MemoryError, torch.cuda.OutOfMemoryError):
            raise
        except Exception as exc:
            first = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            if self.required:
                raise RuntimeError(f"{self.key}=on: torch.compile failed on {self.what} ({first}); "
                                   f"use {self.key}=off") from None
            print(f"{self.who}: warning: torch.compile failed on {self.what} ({first}); it runs eagerly "
                  f"({self.key}=off skips the attempt)", file=sys.stderr)
            self.compiled = None
            out = self.fn(*args)
        self.checked.add(signature)
        return out


def compiled(fn: Callable[..., Any], setting: object, device: torch.device, what: str, key: str = "compile",
             who: str = "ssdd teacher") -> Compiled:
    """`fn` as the `key` setting asks: `on` where torch.compile is unavailable is a one-line error, `auto`
    then quietly stays eager."""
    if not switch(setting, key, device):
        return Compiled(fn, compile_it=False, what=what, key=key, who=who)
    required = str(setting).lower() != "auto"
    reason = compile_unavailable(device)
    if reason and required:
        raise ValueError(f"{key}=on: torch.compile is unavailable ({reason}); use {key}=off")
    return Compiled(fn, compile_it=reason is None, required=required, what=what, key=key, who=who)
