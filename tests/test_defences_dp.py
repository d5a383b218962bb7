"""DP-SGD: the ε reported is Opacus' RDP bound for the steps run, and DP models leak less."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent
from scipy.special import log_softmax
from sklearn.metrics import roc_auc_score
from torch import nn

from miakit import pipeline
from miakit.config import TrainConfig, load_config
from miakit.config.defences import DPConfig
from miakit.data.registry import load_pool
from miakit.defences.dp import train_private
from miakit.errors import MiakitError
from miakit.models import build_model
from miakit.store import RunDir
from miakit.train.trainer import predict_logits, train_model

#: the RDP orders Opacus' RDPAccountant uses by default, written out independently
ORDERS = [1 + k / 10.0 for k in range(1, 100)] + list(range(12, 64))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def digits() -> tuple[torch.Tensor, torch.Tensor]:
    pool = load_pool("digits", subsample=300, seed=0)
    return torch.from_numpy(pool.x), torch.from_numpy(pool.y)


def mlp(seed: int, width: int = 64) -> nn.Module:
    torch.manual_seed(seed)
    return build_model("mlp", (64,), 10, hidden=[width])


def test_epsilon_is_opacus_rdp_bound_for_the_steps_run(digits):
    x, y = digits
    cfg = TrainConfig(epochs=3, batch_size=32, lr=0.05, optimizer="sgd")
    dp = DPConfig(enabled=True, noise_multiplier=1.1, max_grad_norm=1.0, delta=1e-5)
    report, spent = train_private(mlp(0), x[:200], y[:200], cfg, dp, seed=0)
    steps_per_epoch = math.ceil(200 / 32)
    assert spent.steps == report.steps == 3 * steps_per_epoch
    assert spent.sample_rate == pytest.approx(1 / steps_per_epoch)
    rdp = compute_rdp(q=1 / steps_per_epoch, noise_multiplier=1.1, steps=21, orders=ORDERS)
    expected, _ = get_privacy_spent(orders=ORDERS, rdp=rdp, delta=1e-5)
    assert spent.epsilon == pytest.approx(expected, rel=1e-9)
    assert 1 < spent.epsilon < 20


@pytest.mark.filterwarnings("ignore:Optimal order is the largest alpha")
def test_target_epsilon_is_reached_not_exceeded(digits):
    x, y = digits
    cfg = TrainConfig(epochs=2, batch_size=50, lr=0.05, optimizer="sgd")
    dp = DPConfig(enabled=True, target_epsilon=2.0, delta=1e-5)
    _, spent = train_private(mlp(0), x[:200], y[:200], cfg, dp, seed=1)
    assert 1.9 <= spent.epsilon <= 2.0 * 1.01
    assert spent.noise_multiplier > 0.5


def test_same_seed_same_model_and_plain_module_after(digits):
    x, y = digits
    cfg = TrainConfig(epochs=2, batch_size=32, lr=0.05)
    dp = DPConfig(enabled=True, noise_multiplier=1.0)
    models = [mlp(0), mlp(0), mlp(0)]
    for model, seed in zip(models, [3, 3, 4], strict=True):
        train_private(model, x[:100], y[:100], cfg, dp, seed=seed)
    first, again, other = (m.state_dict() for m in models)
    assert first.keys() == mlp(0).state_dict().keys()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert not all(torch.equal(first[k], other[k]) for k in first)
    assert not any(m._forward_hooks or m._backward_hooks for m in models[0].modules())
    assert all(
        not hasattr(p, "grad_sample") or p.grad_sample is None for p in models[0].parameters()
    )


def test_batchnorm_model_is_refused(digits):
    x, y = digits
    model = nn.Sequential(nn.Linear(64, 16), nn.BatchNorm1d(16), nn.Linear(16, 10))
    dp = DPConfig(enabled=True, noise_multiplier=1.0)
    with pytest.raises(MiakitError, match="BatchNorm"):
        train_private(model, x, y, TrainConfig(epochs=1), dp, seed=0)


@pytest.mark.parametrize(
    "settings", [{"lookahead": True}, {"early_stopping_patience": 2}, {"batched": True}]
)
def test_settings_dp_sgd_does_not_support_are_refused(digits, settings):
    x, y = digits
    dp = DPConfig(enabled=True, noise_multiplier=1.0)
    with pytest.raises(MiakitError, match="not supported"):
        train_private(mlp(0), x, y, TrainConfig(epochs=1, **settings), dp, seed=0)


def loss_auc(model: nn.Module, x: torch.Tensor, y: np.ndarray, keep: np.ndarray) -> float:
    """LOSS attack (Yeom et al. 2018): lower loss → member; AUC of members against the rest."""
    log_probs = log_softmax(predict_logits(model, x).astype(np.float64), axis=1)
    return float(roc_auc_score(keep, log_probs[np.arange(len(y)), y]))


def test_dp_models_are_less_exposed_to_the_loss_attack(digits):
    """8 models on class-balanced halves of 300 digits: 4 non-private, 4 DP-SGD (σ=2, ε≈4.7)."""
    x, y = digits
    labels = y.numpy()
    auc: dict[str, list[float]] = {"plain": [], "dp": []}
    for i in range(4):
        keep = np.zeros(len(labels), bool)
        g = np.random.default_rng(i)
        for c in range(10):
            rows = g.permutation(np.flatnonzero(labels == c))
            keep[rows[: len(rows) // 2]] = True
        members = torch.from_numpy(np.flatnonzero(keep))
        plain = mlp(i, 512)
        train_model(
            plain, x[members], y[members], TrainConfig(epochs=60, batch_size=32, lr=3e-3), i
        )
        private = mlp(i, 512)
        cfg = TrainConfig(epochs=15, batch_size=32, lr=0.1)
        dp = DPConfig(enabled=True, noise_multiplier=2.0, max_grad_norm=1.0)
        _, spent = train_private(private, x[members], y[members], cfg, dp, seed=i)
        assert spent.epsilon < 10
        held_out_acc = (predict_logits(private, x).argmax(1) == labels)[~keep].mean()
        assert held_out_acc > 0.3  # it learned something: chance is 0.1
        auc["plain"].append(loss_auc(plain, x, labels, keep))
        auc["dp"].append(loss_auc(private, x, labels, keep))
    plain_auc, dp_auc = np.mean(auc["plain"]), np.mean(auc["dp"])
    assert plain_auc > 0.6, auc
    assert dp_auc < plain_auc - 0.05, auc
    assert abs(dp_auc - 0.5) < abs(plain_auc - 0.5) / 2, auc


@pytest.mark.attack("lira-online")
def test_dp_sgd_audit_brings_lira_auc_nearer_one_half(tmp_path):
    """The pipeline end to end, plain against DP-SGD, on 400 digits and 16 models each: the
    DP-SGD run's models report ε in meta.json, and LiRA's AUC against them is nearer 0.5.
    (With few models, leave-one-out LiRA is biased below 0.5 where there is no signal: a
    member's IN side has one reference fewer than its OUT side, so fits it worse.)"""
    common = [
        "data.subsample=400",
        "split.num_models=16",
        "model.hidden=[512]",
        "train.batch_size=32",
        "attacks=[lira-online]",
        "evaluate.fprs=[0.01]",
    ]
    plain = load_config(None, [*common, "train.epochs=60", "train.lr=0.003"])
    private = load_config(
        None,
        [
            *common,
            "train.optimizer=sgd",
            "train.lr=0.1",
            "train.epochs=15",
            "defences.dp.enabled=true",
            "defences.dp.noise_multiplier=2.0",
        ],
    )
    auc = {}
    for name, config in (("plain", plain), ("dp", private)):
        run = RunDir(tmp_path / name)
        auc[name] = pipeline.audit(config, run)["lira-online"]["auc"]["mean"]
    assert all(0 < RunDir(tmp_path / "dp").read_meta(m)["dp"]["epsilon"] < 10 for m in range(16))
    assert auc["plain"] > 0.6, auc
    assert abs(auc["dp"] - 0.5) < abs(auc["plain"] - 0.5) / 2, auc
