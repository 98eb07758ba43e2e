"""Kernel ridge regression core shared by KRR-ST and Boost (method.md section 3, steps 3-5).

Features get a bias column; the linear kernel over them is solved with a trace-scaled ridge, in
float32 whatever autocast is active, by Cholesky (falling back to a general solve), never an inverse.
"""

from __future__ import annotations

import torch


def with_bias(features: torch.Tensor) -> torch.Tensor:
    """(n, p) -> (n, p + 1) with a column of ones."""
    return torch.cat([features, features.new_ones(features.shape[0], 1)], dim=1)


def ridge_solve(gram: torch.Tensor, rhs: torch.Tensor, ridge: float) -> torch.Tensor:
    """(G + lambda I)^-1 rhs with lambda = ridge * trace(G) (detached)."""
    lam = ridge * torch.trace(gram).detach()
    system = gram + lam * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    factor, info = torch.linalg.cholesky_ex(system)
    if int(info) == 0:
        return torch.cholesky_solve(rhs, factor)
    return torch.linalg.solve(system, rhs)


def krr_predict(support_features: torch.Tensor, query_features: torch.Tensor, support_targets: torch.Tensor,
                ridge: float = 1e-6) -> torch.Tensor:
    """K_ts (K_ss + lambda I)^-1 Y_s with K = [phi, 1][phi, 1]^T; returns (n_query, d) in float32."""
    with torch.autocast(device_type=support_features.device.type, enabled=False):
        p_s = with_bias(support_features.float())
        p_t = with_bias(query_features.float())
        k_ss = p_s @ p_s.T  # (m, m)
        k_ts = p_t @ p_s.T  # (n, m)
        return k_ts @ ridge_solve(k_ss, support_targets.float(), ridge)


def krr_loss(support_features: torch.Tensor, query_features: torch.Tensor, support_targets: torch.Tensor,
             query_targets: torch.Tensor, ridge: float = 1e-6) -> torch.Tensor:
    """Mean squared error between the KRR prediction for the query batch and its teacher targets."""
    prediction = krr_predict(support_features, query_features, support_targets, ridge)
    return torch.mean((prediction - query_targets.float()) ** 2)
