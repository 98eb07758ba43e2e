"""Distillation: methods by name sharing the KRR core, the model pool and the storage accountant."""

from ssdd.distill import boost, interop, krr_st, mkdt, subsets  # noqa: F401  (register the methods)
from ssdd.distill.artifact import DistilledSet, load_distilled, save_distilled
from ssdd.distill.config import DistillConfig
from ssdd.distill.registry import available_methods, get_method

__all__ = ["DistillConfig", "DistilledSet", "available_methods", "get_method", "load_distilled", "save_distilled"]
