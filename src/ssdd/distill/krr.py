"""Kernel ridge regression core shared by KRR-ST and Boost (docs/method.md section 3, steps 3-5).

Features get a bias column, P = [phi, 1] of shape (M, D + 1) for the M support rows. The same ridge
regression has two exact forms:

- dual:   Y_hat = P_t P_s^T (P_s P_s^T + lambda I_M)^-1 Y_s        (an M x M system)
- primal: Y_hat = P_t (P_s^T P_s + lambda I_{D+1})^-1 P_s^T Y_s    (a (D+1) x (D+1) system)

They are equal by the push-through identity P^T (P P^T + lambda I)^-1 = (P^T P + lambda I)^-1 P^T, with
the same lambda in both: lambda = ridge * trace(P_s P_s^T) = ridge * trace(P_s^T P_s) = ridge * ||P_s||_F^2
(detached). `form="auto"` takes the smaller system: the primal when M > D + 1, where the M x M kernel
is rank-deficient (rank <= D + 1) and its float32 solve is poorly conditioned. The kernel and its solve
ignore autocast and run in `dtype`: by default (None, `outer.solve_dtype=auto`) float64 in the primal form,
where the (D+1) x (D+1) system is small and float32 rounding measurably perturbs the gradient, and float32
in the dual form; by Cholesky (falling back to a general solve), never an inverse. The prediction is
returned in float32.
"""

from __future__ import annotations

import torch

FORMS = ("auto", "primal", "dual")


def with_bias(features: torch.Tensor) -> torch.Tensor:
    """(n, p) -> (n, p + 1) with a column of ones."""
    return torch.cat([features, features.new_ones(features.shape[0], 1)], dim=1)


def ridge_solve(gram: torch.Tensor, rhs: torch.Tensor, ridge: float, sync_free: bool = False) -> torch.Tensor:
    """(G + lambda I)^-1 rhs with lambda = ridge * trace(G) (detached): by Cholesky, or by a general (LU) solve
    when the Cholesky factorisation fails (a float32 system that rounding made indefinite).

    sync_free: the same choice without the host reading the factorisation's status (see _solve_without_sync)."""
    lam = ridge * torch.trace(gram).detach()
    system = gram + lam * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    if sync_free:
        return _solve_without_sync(system, rhs)
    factor, info = torch.linalg.cholesky_ex(system)
    if int(info) == 0:
        return torch.cholesky_solve(rhs, factor)
    return torch.linalg.solve(system, rhs)


def _solve_without_sync(system: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """system^-1 rhs by Cholesky where it succeeds, else by LU, chosen on the device by torch.where.

    Both branches are computed. A failed factor holds garbage, and a branch torch.where does not select still
    gets a zero gradient, which its backward turns into NaN through that garbage (0 * NaN). So the status is
    read first, without gradients, and each branch factors a matrix it can factor: the Cholesky branch the
    system where it succeeds (else the identity), the LU branch the system where it does not (else the
    identity). The selected branch is the plain path's computation; the other's gradient is exactly zero."""
    eye = torch.eye(system.shape[0], dtype=system.dtype, device=system.device)
    with torch.no_grad():
        ok = torch.linalg.cholesky_ex(system)[1] == 0
    factor = torch.linalg.cholesky_ex(torch.where(ok, system, eye))[0]
    by_cholesky = torch.cholesky_solve(rhs, factor)
    by_lu = torch.linalg.solve_ex(torch.where(ok, eye, system), rhs)[0]
    return torch.where(ok, by_cholesky, by_lu)


def resolve_form(form: str, support_rows: int, features: int) -> str:
    """The form to use for `support_rows` rows of `features` columns (bias column included)."""
    if form not in FORMS:
        raise ValueError(f"outer.form must be one of {', '.join(FORMS)}, got '{form}'")
    if form == "auto":
        return "primal" if support_rows > features else "dual"
    return form


SOLVE_DTYPES = ("auto", "float32", "float64")


def krr_solve_dtype(name: str) -> torch.dtype | None:
    """torch dtype of the `outer.solve_dtype` setting; None for auto (float64 in the primal form, else float32)."""
    dtypes = {"auto": None, "float32": torch.float32, "float64": torch.float64}
    if name not in dtypes:
        raise ValueError(f"outer.solve_dtype must be one of {', '.join(SOLVE_DTYPES)}, got '{name}'")
    return dtypes[name]


def krr_predict(support_features: torch.Tensor, query_features: torch.Tensor, support_targets: torch.Tensor,
                ridge: float = 1e-6, form: str = "auto", dtype: torch.dtype | None = None,
                sync_free: bool = False) -> torch.Tensor:
    """The ridge-regression prediction for the query rows from the support set; (n_query, d) in float32.
    dtype None: float64 in the primal form, float32 in the dual; sync_free: see ridge_solve."""
    form = resolve_form(form, support_features.shape[0], support_features.shape[1] + 1)
    if dtype is None:
        dtype = torch.float64 if form == "primal" else torch.float32
    with torch.autocast(device_type=support_features.device.type, enabled=False):
        p_s = with_bias(support_features.to(dtype))
        p_t = with_bias(query_features.to(dtype))
        y_s = support_targets.to(dtype)
        if form == "primal":
            prediction = p_t @ ridge_solve(p_s.T @ p_s, p_s.T @ y_s, ridge, sync_free)
        else:
            prediction = (p_t @ p_s.T) @ ridge_solve(p_s @ p_s.T, y_s, ridge, sync_free)
        return prediction.float()


def krr_loss(support_features: torch.Tensor, query_features: torch.Tensor, support_targets: torch.Tensor,
             query_targets: torch.Tensor, ridge: float = 1e-6, form: str = "auto",
             dtype: torch.dtype | None = None, sync_free: bool = False) -> torch.Tensor:
    """Mean squared error between the KRR prediction for the query batch and its teacher targets."""
    prediction = krr_predict(support_features, query_features, support_targets, ridge, form, dtype, sync_free)
    return torch.mean((prediction - query_targets.float()) ** 2)
