"""Linear centred kernel alignment (Kornblith et al., 2019) between two representations of the same inputs."""

from __future__ import annotations

import torch


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """CKA(X, Y) = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F) for (n, p) and (n, q) features."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same inputs on both sides, got {x.shape[0]} and {y.shape[0]} rows")
    x = x.double() - x.double().mean(0)
    y = y.double() - y.double().mean(0)
    cross = torch.linalg.matrix_norm(y.T @ x) ** 2
    denominator = torch.linalg.matrix_norm(x.T @ x) * torch.linalg.matrix_norm(y.T @ y)
    return float(cross / denominator) if denominator > 0 else 0.0
