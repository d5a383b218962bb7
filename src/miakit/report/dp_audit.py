"""The report's DP-audit section: the accountant's ε beside the measured lower bounds, and the
canaries' ROC against the trade-off curve of the claimed (ε, δ)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from miakit.evaluate.roc import roc_curve
from miakit.privacy_audit import exposure_method
from miakit.report.figures import finish_log_roc, png_base64
from miakit.store import load_npy


def dp_region_tpr(fpr: np.ndarray, epsilon: float, delta: float) -> np.ndarray:
    """The largest TPR any test can reach at `fpr` against an (ε, δ)-DP algorithm:
    min(e^ε·FPR + δ, 1 − e^−ε·(1 − FPR − δ), 1) (Kairouz, Oh and Viswanath 2015, Theorem 2.1)."""
    fpr = np.asarray(fpr, dtype=np.float64)
    bound = np.minimum(np.exp(epsilon) * fpr + delta, 1 - np.exp(-epsilon) * (1 - fpr - delta))
    return np.clip(bound, 0.0, 1.0)


def canary_roc_figure(
    scores: dict[str, np.ndarray], members: np.ndarray, epsilon: float | None, delta: float
) -> Figure:
    """Log-log ROC of each attack on the canaries (scores [T, m] per attack, members [T, m],
    pooled over targets), with the (ε, δ)-DP limit of the accountant's ε when there is one."""
    fig, ax = plt.subplots(figsize=(6, 5))
    floor = 1.0 / members.size
    for name, s in scores.items():
        roc = roc_curve(s.ravel(), members.ravel())
        ax.plot(roc.fpr, roc.tpr, lw=1.6, label=f"{name} (AUC {roc.auc():.3f})")
    if epsilon is not None:
        grid = np.logspace(np.log10(floor), 0, 400)
        ax.plot(grid, dp_region_tpr(grid, epsilon, delta), color="black", lw=1.4,
                label=f"({epsilon:.3g}, {delta:g})-DP limit")  # fmt: skip
    finish_log_roc(fig, ax, floor, title="Canaries: ROC against the claimed guarantee")
    return fig


def dp_audit_section(root: Path) -> str | None:
    """HTML for <root>/audit.json (written by `miakit audit-dp`) and for the canaries that
    `miakit evaluate` left out of the membership metrics (metrics.json), or None when there are
    neither."""
    metrics_path = root / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.is_file() else {}
    left_out = (metrics.get("canaries_left_out") or {}).get("count", 0)
    note = (
        f"<p>The membership metrics and the verdict above leave out the {left_out} canaries "
        "(an auditing device with random keep bits, not the population they speak for; "
        "<code>evaluate.include_canaries</code> keeps them in).</p>"
        if left_out
        else ""
    )
    path = root / "audit.json"
    if not path.is_file():
        return note or None
    audit = json.loads(path.read_text())
    accountant = audit["accountant_epsilon"]
    rows = []
    for name, figures in audit["attacks"].items():
        many = figures.get("many_runs") or {}
        independent = many.get("independent_trials") or {}
        rows.append(
            {
                "attack": name,
                "accountant ε": accountant,
                "one-run ε ≥": figures["one_run"]["epsilon_lower"],
                "many-run ε ≥": many.get("epsilon_lower"),
                "threshold ε ≥ (independent trials)": independent.get("epsilon_lower"),
                "GDP μ ≥ (independent trials)": independent.get("mu_lower"),
                "ε of μ (Gaussian shape)": independent.get("epsilon_from_mu"),
            }
        )
    secrets = audit.get("exposure")
    if secrets:
        many = secrets["bounds"].get("many_runs") or {}
        rows.append(
            {
                "attack": "exposure (secret canaries)",
                "accountant ε": accountant,
                "one-run ε ≥": secrets["bounds"]["one_run"]["epsilon_lower"],
                "many-run ε ≥": many.get("epsilon_lower"),
            }
        )
    table = pd.DataFrame(rows).to_html(
        index=False, float_format=lambda v: f"{v:.3g}", na_rep="–", border=0
    )
    records = np.asarray(audit["canary_records"])
    members = load_npy(root / "keep.npy")[audit["targets"]][:, records]
    scores = {n: load_npy(root / "scores" / f"{n}.npy")[:, records] for n in audit["attacks"]}
    figure = canary_roc_figure(scores, members, accountant, audit["delta"])
    canaries = audit["canaries"]
    targets = len(audit["targets"])
    return (
        f"<p>{canaries['count']} {canaries['kind']} canaries, each in every model's training set "
        f"with probability 1/2; δ = {audit['delta']:g}, bounds at confidence "
        f"{audit['confidence']:.3f}. One run: Steinke, Nasr and Jagielski 2023, each of the "
        f"{targets} targets on its own canaries, the largest bound. Many runs: the same theorem "
        f"over the (target, canary) pairs of the second half of the targets pooled, the guess "
        "counts chosen on the first half; it holds however one model's canary scores are "
        "correlated, provided the scores do not use the audited targets' keep bits (attacks with "
        "leave-one-out references do: there it is indicative). The threshold ε and the "
        "Gaussian-DP μ count every (target, canary) pair as an independent trial, which canaries "
        "sharing a model are not: indicative only. A measured bound above the accountant's ε "
        "means the DP claim is broken.</p>"
        + note
        + _exposure_line(secrets)
        + table
        + f'<img alt="canary ROC" src="data:image/png;base64,{png_base64(figure)}">'
    )


def _exposure_line(secrets: dict | None) -> str:
    """One paragraph on the secret canaries' exposure (audit.json's `exposure`), or ''."""
    if not secrets:
        return ""

    def bits(value: float | None) -> str:
        return "–" if value is None else f"{value:.2f}"

    return (
        f"<p>Exposure (Carlini et al. 2019, the Secret Sharer) of the secret canaries "
        f"<code>{html.escape(secrets['secret_format'])}</code> with "
        f"{secrets['secret_digits']}-digit secrets, {exposure_method(secrets)} (at most "
        f"{secrets['max_bits']:.2f} bits): "
        f"{bits(secrets['members_mean'])} bits on average where the target trained on the "
        f"canary, {bits(secrets['non_members_mean'])} where it did not.</p>"
    )
