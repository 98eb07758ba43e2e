import torch

from ssdd.teacher.barlow_twins import barlow_twins_loss, projector, standardize


def direct_loss(z1: torch.Tensor, z2: torch.Tensor, lam: float, scale: float) -> torch.Tensor:
    """Element-by-element formula in float64: C_ij = sum_b a_bi c_bj / N with batch-standardised a, c."""
    z1, z2 = z1.double(), z2.double()
    n, d = z1.shape
    a = (z1 - z1.mean(0)) / torch.sqrt(z1.var(0, unbiased=False) + 1e-5)
    c = (z2 - z2.mean(0)) / torch.sqrt(z2.var(0, unbiased=False) + 1e-5)
    total = torch.zeros((), dtype=torch.float64)
    for i in range(d):
        for j in range(d):
            cij = sum(a[b, i] * c[b, j] for b in range(n)) / n
            total += (1 - cij) ** 2 if i == j else lam * cij**2
    return scale * total


def test_loss_matches_direct_formula():
    torch.manual_seed(0)
    z1, z2 = torch.randn(12, 5), torch.randn(12, 5) * 3 + 1
    got = barlow_twins_loss(z1, z2, lambda_offdiag=0.0051, scale=0.1)
    assert torch.allclose(got.double(), direct_loss(z1, z2, 0.0051, 0.1), rtol=1e-5)


def test_loss_is_small_for_identical_decorrelated_views():
    z = torch.linalg.qr(torch.randn(64, 8))[0] * 8  # orthogonal columns -> C close to identity
    z = z - z.mean(0)
    assert barlow_twins_loss(z, z).item() < 0.05
    assert barlow_twins_loss(z, torch.randn(64, 8)).item() > 0.5


def test_standardize_matches_batchnorm_without_affine():
    z = torch.randn(32, 6) * 2 + 3
    bn = torch.nn.BatchNorm1d(6, affine=False).train()
    assert torch.allclose(standardize(z), bn(z), atol=1e-5)


def test_loss_stays_float32_under_bfloat16_inputs():
    z1, z2 = torch.randn(16, 4).bfloat16(), torch.randn(16, 4).bfloat16()
    assert barlow_twins_loss(z1, z2).dtype == torch.float32


def test_projector_shapes():
    head = projector(32, [64, 64, 16])
    assert head(torch.randn(4, 32)).shape == (4, 16)
    linears = [m for m in head if isinstance(m, torch.nn.Linear)]
    assert [m.bias is not None for m in linears] == [False, False, True]
    assert sum(isinstance(m, torch.nn.BatchNorm1d) for m in head) == 2
