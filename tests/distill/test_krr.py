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


def _closed_form_float64(phi_s: torch.Tensor, phi_t: torch.Tensor, y_s: torch.Tensor, ridge: float) -> torch.Tensor:
    """Ridge regression in float64 through an explicit dual solve (the definition, not the implementation)."""
    p_s, p_t = with_bias(phi_s.double()), with_bias(phi_t.double())
    gram = p_s @ p_s.T
    lam = ridge * torch.trace(gram).detach()
    return p_t @ p_s.T @ torch.linalg.solve(gram + lam * torch.eye(len(gram), dtype=torch.float64), y_s.double())


@pytest.mark.parametrize("rows", [12, 40])  # fewer and more support rows than features + 1 (= 17)
@pytest.mark.parametrize("form", ["primal", "dual", "auto"])
def test_both_forms_match_float64_closed_form_predictions_and_gradients(rows, form):
    torch.manual_seed(rows)
    phi_s = torch.randn(rows, 16, dtype=torch.float64)
    phi_t, y_s, y_t = torch.randn(30, 16, dtype=torch.float64), torch.randn(rows, 5), torch.randn(30, 5)
    ridge = 1e-3

    def grads(fn, dtype):
        s = phi_s.to(dtype).requires_grad_(True)
        y = y_s.to(dtype).requires_grad_(True)
        loss = torch.mean((fn(s, phi_t.to(dtype), y) - y_t.to(dtype)) ** 2)
        return (loss, *torch.autograd.grad(loss, [s, y]))

    ours = grads(lambda s, t, y: krr_predict(s, t, y, ridge, form), torch.float32)
    ref = grads(lambda s, t, y: _closed_form_float64(s, t, y, ridge), torch.float64)
    for a, b in zip(ours, ref, strict=True):
        assert torch.linalg.norm(a.double() - b) / torch.linalg.norm(b) < 1e-4


def test_auto_takes_the_smaller_system_and_bad_forms_are_rejected():
    from ssdd.distill.krr import resolve_form

    assert resolve_form("auto", 100, 17) == "primal" and resolve_form("auto", 17, 17) == "dual"
    assert resolve_form("dual", 100, 17) == "dual"
    with pytest.raises(ValueError, match=r"outer\.form"):
        resolve_form("cholesky", 3, 3)


def test_float64_solve_returns_float32_and_is_closer_to_the_closed_form():
    from ssdd.distill.krr import krr_solve_dtype

    torch.manual_seed(3)
    phi_s, phi_t, y_s = torch.randn(40, 16), torch.randn(30, 16), torch.randn(40, 5)
    reference = _closed_form_float64(phi_s, phi_t, y_s, 1e-7)
    out = krr_predict(phi_s, phi_t, y_s, 1e-7, "dual", krr_solve_dtype("float64"))
    assert out.dtype == torch.float32
    assert torch.linalg.norm(out.double() - reference) / torch.linalg.norm(reference) < 1e-6
    with pytest.raises(ValueError, match="solve_dtype must be one of auto, float32, float64"):
        krr_solve_dtype("half")


def test_auto_solve_dtype_is_float64_in_the_primal_form_and_float32_in_the_dual():
    from ssdd.distill.krr import krr_solve_dtype

    assert krr_solve_dtype("auto") is None
    torch.manual_seed(4)
    phi_t = torch.randn(30, 16)
    for rows, form, expected in ((60, "primal", torch.float64), (10, "dual", torch.float32)):
        phi_s, y_s = torch.randn(rows, 16), torch.randn(rows, 5)
        auto = krr_predict(phi_s, phi_t, y_s, 1e-6)  # form auto resolves to `form` for these shapes
        assert torch.equal(auto, krr_predict(phi_s, phi_t, y_s, 1e-6, form, expected))
        assert auto.dtype == torch.float32


@pytest.mark.parametrize("gram", [torch.tensor([[2.0, 0.5], [0.5, 1.0]]), torch.tensor([[1.0, 2.0], [2.0, 1.0]])],
                         ids=["cholesky", "fallback"])
def test_sync_free_ridge_solve_equals_the_plain_solve_with_finite_gradients(gram):
    """The sync-free solve picks the same branch on the device: the same solution and the same gradients as the
    plain solve, for a system Cholesky factors and one it cannot (where a naive torch.where of a failed
    Cholesky branch would give NaN gradients)."""
    rhs = torch.tensor([[1.0, -1.0], [0.5, 2.0]])
    results = {}
    for sync_free in (False, True):
        g, r = gram.clone().requires_grad_(True), rhs.clone().requires_grad_(True)
        out = ridge_solve(g, r, ridge=0.0, sync_free=sync_free)
        (out * torch.arange(1.0, 5.0).view(2, 2)).sum().backward()
        results[sync_free] = (out.detach(), g.grad, r.grad)
    for plain, fast in zip(results[False], results[True], strict=True):
        assert torch.isfinite(fast).all()
        assert torch.allclose(plain, fast, atol=1e-6)
