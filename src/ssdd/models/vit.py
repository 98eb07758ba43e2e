"""A small Vision Transformer for CIFAR-sized images, built on `torchvision.models.VisionTransformer`.

Patches of resolution // 8 pixels (4x4 at 32 px, so 64 tokens + the class token; the patch size must divide the
resolution), cfg.depth or 6 encoder layers, 8 heads, hidden size cfg.width or 256 (must be divisible by 8),
MLP size 2 * hidden. The classification head is replaced by nn.Identity, so the output is the final
class-token feature after the encoder's LayerNorm: feature_dim = hidden size (256 by default).
"""

from __future__ import annotations

from torch import nn
from torchvision.models import VisionTransformer

from ssdd.config import ModelConfig
from ssdd.models.registry import register

NUM_HEADS = 8


def small_vit(resolution: int, width: int = 256, depth: int = 6, num_heads: int = NUM_HEADS) -> VisionTransformer:
    if width % num_heads:
        raise ValueError(f"ViT hidden size (width) {width} must be divisible by the number of heads {num_heads}")
    patch = max(1, resolution // 8)
    if resolution % patch:
        raise ValueError(f"ViT patch size {patch} (resolution // 8) does not divide the resolution {resolution}")
    model = VisionTransformer(image_size=resolution, patch_size=patch, num_layers=depth, num_heads=num_heads,
                              hidden_dim=width, mlp_dim=2 * width)
    model.heads = nn.Identity()
    model.feature_dim = width
    return model


@register("vit_small")
def vit_small(cfg: ModelConfig, resolution: int) -> nn.Module:
    return small_vit(resolution, cfg.width or 256, cfg.depth or 6)
