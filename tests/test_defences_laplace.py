"""Last-layer KFAC Laplace: the Kronecker algebra matches dense matrices, and it calibrates."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import log_softmax, softmax
from torch import nn

from miakit.config import TrainConfig
from miakit.config.defences import LaplaceConfig
from miakit.data.registry import load_pool
from miakit.defences.laplace import (
    choose_prior_precision,
    features_and_logits,
    fit_laplace,
    kron_factors,
    last_linear,
    log_evidence,
    logit_covariance,
)
from miakit.errors import MiakitError
from miakit.evaluate.calibration import reliability
from miakit.models import build_model
from miakit.train.trainer import predict_logits, train_model

pytestmark = pytest.mark.usefixtures("one_thread")


def small_net_and_data(seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))
    return net, torch.randn(40, 5)


def dense_posterior_precision(net: nn.Module, x: torch.Tensor, tau: float) -> torch.Tensor:
    """KFAC GGN G ⊗ A plus τI, built with torch.kron from its definition."""
    layer = last_linear(net)
    feats, logits = features_and_logits(net, layer, x)
    probs = logits.softmax(1)
    g = sum(torch.diag(p) - torch.outer(p, p) for p in probs)
    a = feats.T @ feats / len(feats)
    return torch.kron(g, a) + tau * torch.eye(g.shape[0] * a.shape[0], dtype=torch.float64)


def test_logit_covariance_matches_dense_kron():
    net, x = small_net_and_data()
    layer = last_linear(net)
    feats, logits = features_and_logits(net, layer, x)
    f = kron_factors(feats, logits, layer)
    tau = 0.7
    sigma = torch.linalg.inv(dense_posterior_precision(net, x, tau))
    vec, m = logit_covariance(f, feats, tau)
    for a_n, m_n in zip(feats[:5], m[:5], strict=True):
        jacobian = torch.kron(torch.eye(3, dtype=torch.float64), a_n[None, :])  # d f / d vec(W|b)
        dense = jacobian @ sigma @ jacobian.T
        assert torch.allclose(vec @ torch.diag(m_n) @ vec.T, dense, atol=1e-10)


def test_evidence_matches_dense_and_auto_prior_maximizes_it():
    net, x = small_net_and_data(1)
    layer = last_linear(net)
    feats, logits = features_and_logits(net, layer, x)
    f = kron_factors(feats, logits, layer)
    theta_sq = float(
        layer.weight.detach().double().square().sum() + layer.bias.detach().double().square().sum()
    )

    def dense_evidence(tau: float) -> float:
        logdet = torch.logdet(dense_posterior_precision(net, x, tau)).item()
        return -0.5 * tau * theta_sq + 0.5 * f.num_params * math.log(tau) - 0.5 * logdet

    for tau in (0.01, 1.0, 30.0):
        assert log_evidence(f, tau) == pytest.approx(dense_evidence(tau), rel=1e-9)
    chosen = choose_prior_precision(f, LaplaceConfig(enabled=True, selection="marglik"), None)
    grid = np.logspace(-4, 4, 401)
    assert log_evidence(f, chosen) >= max(dense_evidence(t) for t in grid) - 1e-6


@pytest.fixture(scope="module")
def overconfident() -> dict[str, torch.Tensor | nn.Module]:
    """An MLP fitted to 200 digits with its head scaled ×3: ~98% confident at ~89% accuracy."""
    pool = load_pool("digits", subsample=1000, seed=0)
    x, y = torch.from_numpy(pool.x), torch.from_numpy(pool.y)
    torch.manual_seed(0)
    model = build_model("mlp", (64,), 10, hidden=[256])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    train_model(model, x[:200], y[:200], TrainConfig(epochs=100, batch_size=32, lr=3e-3), 0)
    torch.set_num_threads(threads)
    head = last_linear(model)
    with torch.no_grad():
        head.weight *= 3
        head.bias *= 3
    return {"model": model, "x": x, "y": y}


def ece(logits: np.ndarray, labels: torch.Tensor) -> float:
    return reliability(softmax(logits.astype(np.float64), axis=1), labels.numpy()).ece()


def nll(logits: np.ndarray, labels: torch.Tensor) -> float:
    log_probs = log_softmax(logits.astype(np.float64), axis=1)
    return float(-log_probs[np.arange(len(labels)), labels.numpy()].mean())


def fitted(overconfident, cfg: LaplaceConfig) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """Raw and Laplace logits on records neither trained on nor used to choose τ."""
    model, x, y = overconfident["model"], overconfident["x"], overconfident["y"]
    laplace = fit_laplace(model, x[:200], y[:200], cfg, held_out=(x[200:500], y[200:500]), seed=1)
    calibrated = predict_logits(laplace, x[500:])
    assert np.array_equal(calibrated, predict_logits(laplace, x[500:]))  # MC reseeded per call
    return predict_logits(model, x[500:]), calibrated, y[500:]


def test_laplace_probit_lowers_held_out_ece(overconfident):
    raw, calibrated, labels = fitted(overconfident, LaplaceConfig(enabled=True))
    assert ece(raw, labels) > 0.08
    assert ece(calibrated, labels) < 0.6 * ece(raw, labels)
    assert nll(calibrated, labels) < 0.5 * nll(raw, labels)
    assert (raw.argmax(1) == calibrated.argmax(1)).mean() > 0.97


def test_laplace_monte_carlo_lowers_held_out_nll(overconfident):
    cfg = LaplaceConfig(enabled=True, predictive="mc", mc_samples=200)
    raw, calibrated, labels = fitted(overconfident, cfg)
    assert nll(calibrated, labels) < 0.6 * nll(raw, labels)
    assert np.allclose(np.exp(calibrated.astype(np.float64)).sum(1), 1, atol=1e-5)


def test_fixed_prior_and_missing_held_out():
    net, x = small_net_and_data()
    y = torch.randint(0, 3, (len(x),))
    assert (
        fit_laplace(net, x, y, LaplaceConfig(enabled=True, prior_precision=2.5)).prior_precision
        == 2.5
    )
    with pytest.raises(MiakitError, match="held-out"):
        fit_laplace(net, x, y, LaplaceConfig(enabled=True))


class ScaledHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x) / 9


def test_head_that_is_not_the_output_is_refused():
    with pytest.raises(MiakitError, match="last linear layer"):
        fit_laplace(
            ScaledHead(), torch.randn(8, 4), torch.zeros(8, dtype=torch.long), LaplaceConfig()
        )
