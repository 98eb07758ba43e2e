"""Low-rank bases for Boost's parameterisation (docs/method.md section 4.1): PCA fitting and projection.

A basis is a mean vector and K orthonormal components; data -> coefficients -> data is
`reconstruct(project(x))`. PCA is fitted with torch's randomised low-rank SVD (`torch.pca_lowrank`)
on centred data, so 50,000 CIFAR images (768 floats each at 16 px) fit in memory and seconds on 2 cores;
`method="exact"` uses a full SVD (tests, small data).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ssdd.run.progress import phase


@dataclass(frozen=True)
class PCABasis:
    mean: torch.Tensor  # (D,)
    components: torch.Tensor  # (K, D), orthonormal rows
    explained_variance: torch.Tensor  # (K,), variance along each component
    total_variance: float  # sum of the variances of all D dimensions

    @property
    def rank(self) -> int:
        return int(self.components.shape[0])

    def discarded_variance(self) -> float:
        return self.total_variance - float(self.explained_variance.sum())


def _mean(data: torch.Tensor, chunk: int) -> torch.Tensor:
    total = torch.zeros(data.shape[1], dtype=torch.float64, device=data.device)
    for start in range(0, data.shape[0], chunk):
        total += data[start : start + chunk].double().sum(0)
    return total / data.shape[0]


def fit_pca(data: torch.Tensor, rank: int, method: str = "randomized", oversample: int = 10, iterations: int = 4,
            seed: int = 0, chunk: int = 8192, what: str = "samples") -> PCABasis:
    """Top-`rank` principal components of (N, D) data (rows are samples; `what` names them in the phase line)."""
    with phase(f"PCA ({method}): {rank} components of {data.shape[0]:,} {what} ({data.shape[1]:,} values each)"
               ) as fitting:
        basis = _fit_pca(data, rank, method, oversample, iterations, seed, chunk)
        explained = float(basis.explained_variance.sum()) / max(basis.total_variance, 1e-30)
        fitting.detail = f"{100 * explained:.1f} % of the variance"
    return basis


def _fit_pca(data: torch.Tensor, rank: int, method: str, oversample: int, iterations: int, seed: int,
             chunk: int) -> PCABasis:
    n, dim = data.shape
    if not 1 <= rank <= min(n, dim):
        raise ValueError(f"PCA rank must lie in [1, min(N, D)] = [1, {min(n, dim)}], got {rank}")
    dtype = data.dtype if data.dtype == torch.float64 else torch.float32  # float64 stays float64 (tests)
    mean = _mean(data, chunk).to(dtype)
    centred = data.to(dtype) - mean
    total_variance = float(centred.double().pow(2).sum() / max(1, n - 1))
    if method == "exact":
        _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
        components, singular = vh[:rank], singular[:rank]
    elif method == "randomized":
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(seed)
            _, singular, v = torch.pca_lowrank(centred, q=min(rank + oversample, n, dim), center=False,
                                               niter=iterations)
        components, singular = v[:, :rank].T.contiguous(), singular[:rank]
    else:
        raise ValueError(f"PCA method must be 'randomized' or 'exact', got '{method}'")
    return PCABasis(mean, components, singular.pow(2) / max(1, n - 1), total_variance)


def project(data: torch.Tensor, basis: PCABasis) -> torch.Tensor:
    """(N, D) -> (N, K) coefficients."""
    return (data.to(basis.mean.dtype) - basis.mean) @ basis.components.T


def reconstruct(coefficients: torch.Tensor, basis: PCABasis) -> torch.Tensor:
    """(N, K) -> (N, D)."""
    return coefficients @ basis.components + basis.mean


def downsample(images: torch.Tensor, resolution: int) -> torch.Tensor:
    """(N,3,H,W) in [0,1] -> (N,3,r,r), antialiased bilinear (the space the image bases live in)."""
    if images.shape[-1] == resolution:
        return images
    return F.interpolate(images, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)


def upsample(images: torch.Tensor, size: int) -> torch.Tensor:
    """(N,3,r,r) -> (N,3,size,size), bilinear (Boost's Up); the identity when r == size."""
    if images.shape[-1] == size:
        return images
    return F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)


def images_from_coefficients(coefficients: torch.Tensor, bases: torch.Tensor, mean: torch.Tensor,
                             resolution: int, size: int) -> torch.Tensor:
    """X = Up(reshape(C B + mu)): (m, U) coefficients, (U, 3rr) bases, (3rr,) mean -> (m, 3, size, size)."""
    flat = coefficients @ bases + mean
    return upsample(flat.view(-1, 3, resolution, resolution), size)
