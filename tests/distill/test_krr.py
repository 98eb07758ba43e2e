import pytest
import torch

from ssdd.distill.krr import krr_loss, krr_predict, ridge_solve, with_bias


def test_krr_prediction_equals_primal_ridge_regression_in_float64():
    torch.manual_seed(0)
    phi_s, phi_t, y_s = torch.randn(20, 7), torch.randn(30, 7), torch.randn(20, 3)
    ridge = 1e-3
    predicted = krr_predict(phi_s, phi_t, y_s, ridge)
    # primal: a linear head (with bias, also regularised) fitted by ridge regression on the support set
    p_s, p_t = with_bias(phi_s.double()), with_bias(phi_t.double())
    lam = ridge * torch.trace(p_s @ p_s.T)
    weights = torch.linalg.solve(p_s.T @ p_s + lam * torch.eye(8, dtype=torch.float64), p_s.T @ y_s.double())
    assert predicted.dtype == torch.float32
    reference = p_t @ weights
    assert torch.linalg.norm(predicted.double() - reference) / torch.linalg.norm(reference) < 1e-4


def test_krr_interpolates_support_set_with_tiny_ridge():
    torch.manual_seed(1)
    phi_s, y_s = torch.randn(5, 16), torch.randn(5, 4)
    assert torch.allclose(krr_predict(phi_s, phi_s, y_s, ridge=1e-9), y_s, atol=1e-3)


def test_gradients_flow_to_support_features_and_targets():
    phi_s = torch.randn(6, 5, requires_grad=True)
    y_s = torch.randn(6, 2, requires_grad=True)
    loss = krr_loss(phi_s, torch.randn(9, 5), y_s, torch.randn(9, 2))
    loss.backward()
    assert phi_s.grad is not None and phi_s.grad.abs().sum() > 0
    assert y_s.grad is not None and y_s.grad.abs().sum() > 0


def test_float32_under_bfloat16_autocast():
    phi_s, phi_t, y_s = torch.randn(8, 4), torch.randn(3, 4), torch.randn(8, 2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = krr_predict(phi_s.bfloat16(), phi_t.bfloat16(), y_s)
    assert out.dtype == torch.float32


def test_ridge_solve_falls_back_when_cholesky_fails():
    gram = torch.tensor([[1.0, 2.0], [2.0, 1.0]])  # indefinite: Cholesky fails, solve still works
    rhs = torch.tensor([[1.0], [0.0]])
    out = ridge_solve(gram, rhs, ridge=0.0)
    assert torch.allclose(gram @ out, rhs, atol=1e-5)


@pytest.mark.parametrize("m", [1, 3])
def test_shapes(m):
    assert krr_predict(torch.randn(m, 4), torch.randn(5, 4), torch.randn(m, 6)).shape == (5, 6)
