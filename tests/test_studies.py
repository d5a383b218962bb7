"""The four studies' scripts (studies/) at `--scale tiny`: each runs end to end on scikit-learn's
digits, writes its results and figure, and its figures match an independent computation from the
run directories (brute-force loops written here, not the scripts' own code)."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

STUDIES = Path(__file__).resolve().parents[1] / "studies"


@pytest.fixture(scope="module")
def studies():
    sys.path.insert(0, str(STUDIES))
    yield lambda name: importlib.import_module(name)
    sys.path.remove(str(STUDIES))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _flagged_at_zero_fp(scores: np.ndarray, members: np.ndarray) -> np.ndarray:
    """Members called member at FPR 0.1% when a target has < 1000 non-members: those scoring
    above every non-member."""
    assert (~members).sum() < 1000
    return members & (scores > scores[~members].max())


def test_loss_traces_tiny(tmp_path, studies, one_thread):
    path = studies("loss_traces").main(["--scale", "tiny", "--out", str(tmp_path)])
    text = path.read_text()
    assert "scale: tiny" in text and "| lt-iqr |" in text
    assert (tmp_path / "precision_at_1pct.png").stat().st_size > 1000
    rows = pd.read_csv(tmp_path / "precision_at_k.csv")
    run = tmp_path / "loss_traces_location"
    keep = np.load(run / "keep.npy")
    truth = np.load(run / "scores" / "lira-online.npy")
    ranking = np.load(run / "scores" / "lt-iqr.npy")
    for t in range(len(truth)):
        members = keep[t]
        exposed = _flagged_at_zero_fp(truth[t], members)
        inside = [n for n in range(keep.shape[1]) if members[n]]
        k = max(1, int(np.floor(0.01 * len(inside) + 0.5)))
        top = sorted(inside, key=lambda n: (-ranking[t, n], n))[:k]
        expected = sum(bool(exposed[n]) for n in top) / k
        got = rows.query(
            "ranking == 'lt-iqr' and ground_truth == 'lira-online' and fraction == 0.01 "
            "and target == @t"
        )["precision"]
        assert got.item() == pytest.approx(expected)
    # the few-reference baselines are there for 2, 4 and 8 references of each attack
    assert {f"{a} ({k} refs)" for a in ("lira-online", "rmia") for k in (2, 4, 8)} <= set(
        rows["ranking"]
    )


def test_few_references_are_complementary_pairs(studies):
    loss_traces = studies("loss_traces")
    from miakit.attacks import make_attack
    from miakit.data.splits import paired_keep
    from miakit.signals import Signals

    rng = np.random.default_rng(0)
    keep = paired_keep(8, 30, rng)
    logits = rng.normal(size=(8, 30, 1, 3))
    labels = rng.integers(0, 3, 30)
    signals = Signals.from_arrays(logits, labels, keep)
    scores = loss_traces.few_reference_scores(signals, "lira-online", [0, 5], 4, seed=0)
    # the same scores as online LiRA with the two pairs it must have drawn: for target 0 any two
    # of pairs 1..3; each candidate pair of pairs gives different scores, one matches
    for i, t in enumerate((0, 5)):
        others = [p for p in range(4) if p != t // 2]
        candidates = [
            make_attack("lira-online").score_targets(
                signals, [t], [2 * a, 2 * a + 1, 2 * b, 2 * b + 1]
            )[0]
            for j, a in enumerate(others)
            for b in others[j + 1 :]
        ]
        assert sum(np.allclose(scores[i], c) for c in candidates) == 1


def _best_threshold(values: np.ndarray, members: np.ndarray) -> float:
    """Brute force: the largest threshold t maximising TPR − FPR of `value ≥ t` (inf if none
    gains)."""
    best, best_gain = np.inf, 0.0
    for t in sorted(set(values.tolist()), reverse=True):
        called = values >= t
        gain = called[members].mean() - called[~members].mean()
        if gain > best_gain + 1e-15:
            best, best_gain = t, gain
    return best


def test_overconfidence_tiny(tmp_path, studies, one_thread):
    path = studies("overconfidence").main(["--scale", "tiny", "--out", str(tmp_path)])
    assert "OOD FPR permuted" in path.read_text()
    assert (tmp_path / "ood_fpr.png").stat().st_size > 1000
    rows = pd.read_csv(tmp_path / "overconfidence.csv")
    assert set(rows["defence"]) == {"none", "last-layer Laplace"}
    for defence, folder in (("none", "none"), ("last-layer Laplace", "last_layer_laplace")):
        run = tmp_path / folder
        keep = np.load(run / "keep.npy")
        ood = np.load(run / "ood" / "noise" / "logits.npy")
        part = rows[(rows["defence"] == defence) & (rows["attack"] == "threshold-confidence")]
        for _, row in part.iterrows():
            t = int(row["target"])
            shadow = 0 if t != 0 else 1  # the first reference: leave-one-out
            shadow_conf = _softmax(np.load(run / "models" / f"{shadow:04d}" / "logits.npy"))
            threshold = _best_threshold(shadow_conf.max(-1).mean(-1), keep[shadow])
            ood_conf = _softmax(ood[t].astype(np.float64)).max(-1).mean(-1)
            assert row["OOD FPR noise"] == pytest.approx(np.mean(ood_conf >= threshold))
            assert row["MMPS noise"] == pytest.approx(
                _softmax(ood[t].astype(np.float64)).max(-1).mean()
            )
    # the Laplace audit reused the plain models: same weights, queried again
    for m in range(4):
        plain = json.loads((tmp_path / "none" / "models" / f"{m:04d}" / "meta.json").read_text())
        laplace = tmp_path / "last_layer_laplace" / "models" / f"{m:04d}" / "meta.json"
        assert json.loads(laplace.read_text())["finished_at"] == plain["finished_at"]


def test_single_point_tiny(tmp_path, studies, one_thread):
    path = studies("single_point").main(["--scale", "tiny", "--out", str(tmp_path)])
    assert "most exposed" in path.read_text()
    table = pd.read_csv(tmp_path / "single_point.csv")
    run = tmp_path / "loss_traces_location"
    scores, keep = np.load(run / "scores" / "lt-iqr.npy"), np.load(run / "keep.npy")
    exposure = []
    for n in range(keep.shape[1]):
        values = [scores[t, n] for t in range(len(scores)) if keep[t, n]]
        exposure.append(sum(values) / len(values) if values else -np.inf)
    order = sorted(range(len(exposure)), key=lambda n: (-exposure[n], n))
    finite = [n for n in order if np.isfinite(exposure[n])]
    assert set(table.query("group == 'most exposed'")["record"]) == set(finite[:2])
    assert set(table.query("group == 'least exposed'")["record"]) == set(finite[-2:])
    assert table["power_empirical"].between(0, 1).all()
    assert table["error_rate"].between(0, 1).all()


def test_realistic_lira_tiny(tmp_path, studies, one_thread):
    path = studies("realistic_lira").main(["--scale", "tiny", "--out", str(tmp_path)])
    text = path.read_text()
    assert "anti-overfitting" in text and "transfer learning" in text
    assert "not measurable" in text  # FPR 0.001% with a few hundred non-members
    pools = [
        json.loads((tmp_path / f / "pool.json").read_text()) for f in ("baseline", "baseline_seed1")
    ]
    assert pools[0]["fingerprint"] == pools[1]["fingerprint"]  # the seeds share their records
    assert not np.array_equal(
        np.load(tmp_path / "baseline" / "keep.npy"),
        np.load(tmp_path / "baseline_seed1" / "keep.npy"),
    )
    curve = pd.read_csv(tmp_path / "reproducibility.csv")
    sets = []
    for folder in ("baseline", "baseline_seed1"):
        table = pd.read_csv(tmp_path / folder / "tables" / "vulnerability_lira-online.csv")
        sets.append(set(table.loc[table["highly_vulnerable"], "record"].astype(int)))
    assert curve.loc[0, "intersection"] == pytest.approx((len(sets[0]) + len(sets[1])) / 2)
    assert curve.loc[1, "intersection"] == len(sets[0] & sets[1])
    assert curve.loc[1, "union"] == len(sets[0] | sets[1])
    calibration = pd.read_csv(tmp_path / "calibration.csv")
    assert list(dict.fromkeys(calibration["variant"])) == [
        "baseline",
        "anti-overfitting",
        "transfer learning",
    ]


def test_every_scale_gives_valid_configs(studies):
    """The cpu and full scales (not run by the tests) are valid miakit configs."""
    from study_common import CONFIGS, study_config

    from miakit.config import SinglePointConfig, load_config

    loss_traces, overconfidence = studies("loss_traces"), studies("overconfidence")
    realistic_lira, single_point = studies("realistic_lira"), studies("single_point")
    for scale in ("cpu", "full"):
        for name in loss_traces.SCALES[scale]["datasets"]:
            study_config(name, loss_traces.SCALES[scale]["overrides"])
        for overrides in overconfidence.DEFENCES.values():
            study_config(overconfidence.CONFIG, overconfidence.SCALES[scale] + overrides)
        for name in realistic_lira.VARIANTS.values():
            config = study_config(name, realistic_lira.SCALES[scale]["overrides"])
            assert config.evaluate.targets >= 2  # shadow calibration needs two targets
        sets = [*single_point.SCALES[scale]["overrides"], "targets.indices=[0, 1]"]
        load_config(CONFIGS / "single_point.yaml", sets, schema=SinglePointConfig)
    full = study_config("realistic_lira_baseline", realistic_lira.SCALES["full"]["overrides"])
    assert (full.data.name, full.split.num_models, full.model.arch) == ("cifar10", 256, "wrn28-2")
