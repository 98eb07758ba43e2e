"""Backbones by name. Importing this package registers every architecture."""

from ssdd.models import alexnet, convnet, mobilenet, resnet, vgg, vit  # noqa: F401  (registration side effects)
from ssdd.models.registry import available, build_model, describe, register

__all__ = ["available", "build_model", "describe", "register"]
