import pytest
import torch

from ssdd.distill.lowrank import (
    downsample,
    fit_pca,
    images_from_coefficients,
    project,
    reconstruct,
    upsample,
)


def low_rank_data(n: int = 300, dim: int = 40, rank: int = 6, noise: float = 0.01) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    factors = torch.randn(n, rank, generator=generator) * torch.linspace(3, 1, rank)
    return factors @ torch.randn(rank, dim, generator=generator) + 2 + noise * torch.randn(n, dim,
                                                                                            generator=generator)


@pytest.mark.parametrize("method", ["exact", "randomized"])
def test_reconstruction_error_equals_discarded_variance(method):
    data = low_rank_data().double()  # float64: the discarded variance at rank 10 is 1e-5 of the total
    for rank in (3, 6, 10):
        basis = fit_pca(data, rank, method=method)
        residual = data - reconstruct(project(data, basis), basis)
        mean_sq = float(residual.double().pow(2).sum() / (data.shape[0] - 1))
        assert mean_sq == pytest.approx(basis.discarded_variance(), rel=1e-3, abs=1e-4)
    assert torch.allclose(basis.components @ basis.components.T, torch.eye(10, dtype=torch.float64), atol=1e-4)


def test_randomized_matches_exact_subspace():
    data = low_rank_data()
    exact, fast = fit_pca(data, 6, "exact"), fit_pca(data, 6, "randomized")
    overlap = torch.linalg.svdvals(exact.components @ fast.components.T)  # cosines of principal angles
    assert overlap.min() > 0.999
    assert torch.allclose(exact.explained_variance, fast.explained_variance, rtol=1e-3)


def test_full_rank_reconstructs_exactly_and_bad_rank_fails():
    data = low_rank_data(n=30, dim=8)
    basis = fit_pca(data, 8, "exact")
    assert torch.allclose(reconstruct(project(data, basis), basis), data, atol=1e-4)
    with pytest.raises(ValueError, match="rank"):
        fit_pca(data, 9)
    with pytest.raises(ValueError, match="method"):
        fit_pca(data, 2, method="other")


def test_upsampling_identity_and_constant_images():
    images = torch.rand(2, 3, 16, 16)
    assert torch.equal(upsample(images, 16), images)
    constant = torch.full((1, 3, 8, 8), 0.3)
    assert torch.allclose(upsample(constant, 32), torch.full((1, 3, 32, 32), 0.3))
    assert torch.allclose(downsample(torch.full((1, 3, 32, 32), 0.7), 16), torch.full((1, 3, 16, 16), 0.7))
    assert downsample(torch.rand(4, 3, 32, 32), 16).shape == (4, 3, 16, 16)


def test_images_from_coefficients_matches_manual_formula():
    coefficients, bases, mean = torch.randn(5, 7), torch.randn(7, 3 * 4 * 4), torch.randn(3 * 4 * 4)
    out = images_from_coefficients(coefficients, bases, mean, resolution=4, size=8)
    manual = torch.nn.functional.interpolate((coefficients @ bases + mean).view(5, 3, 4, 4), size=(8, 8),
                                             mode="bilinear", align_corners=False)
    assert out.shape == (5, 3, 8, 8) and torch.allclose(out, manual)
