"""Shokri and Salem attacks against classifiers fitted here on features computed in loops."""

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from miakit.attacks import make_attack
from miakit.errors import MiakitError
from miakit.signals import Signals

from .attack_inputs import direct_softmax, nan_signals, random_signals


def loop_features(logits, labels, model, kind):
    rows = []
    for n in range(logits.shape[1]):
        probs = np.mean([direct_softmax(z) for z in logits[model, n]], axis=0)
        if kind == "salem":
            top3 = [sorted(direct_softmax(z), reverse=True)[:3] for z in logits[model, n]]
            probs = np.mean(top3, axis=0)
        rows.append(probs)
    return np.array(rows)


def logistic_scores(logits, labels, keep, target, shadows, kind, per_class):
    feats = {m: loop_features(logits, labels, m, kind) for m in [target, *shadows]}
    groups = [labels == c for c in np.unique(labels)] if per_class else [labels >= 0]
    out = np.empty(len(labels))
    for group in groups:
        x = np.concatenate([feats[m][group] for m in shadows])
        y = np.concatenate([keep[m][group] for m in shadows])
        model = LogisticRegression(max_iter=1000).fit(x, y)
        out[group] = model.predict_proba(feats[target][group])[:, 1]
    return out


@pytest.mark.attack("shokri")
@pytest.mark.parametrize("per_class", [True, False])
@pytest.mark.parametrize("augmentations", [1, 18])
def test_shokri_with_every_pair_equals_a_logistic_fit_here(per_class, augmentations):
    signals, logits, labels, keep = random_signals(
        models=5, records=80, augmentations=augmentations, classes=3, member_boost=3
    )
    options = {"classifier": "logistic", "per_class": per_class, "max_samples": 10_000}
    got = make_attack("shokri", options).score(signals, 0, [1, 2, 3, 4])
    if per_class:
        expected = logistic_scores(logits, labels, keep, 0, [1, 2, 3, 4], "shokri", True)
    else:  # one model: probabilities plus the one-hot label
        feats = {m: loop_features(logits, labels, m, "shokri") for m in range(5)}
        onehot = np.eye(3)[labels]
        x = np.concatenate([np.hstack([feats[m], onehot]) for m in [1, 2, 3, 4]])
        y = np.concatenate([keep[m] for m in [1, 2, 3, 4]])
        fitted = LogisticRegression(max_iter=1000).fit(x, y)
        expected = fitted.predict_proba(np.hstack([feats[0], onehot]))[:, 1]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.attack("salem")
@pytest.mark.parametrize("augmentations", [1, 18])
def test_salem_top3_on_one_shadow_equals_a_logistic_fit_here(augmentations):
    signals, logits, labels, keep = random_signals(
        models=4, records=80, augmentations=augmentations, classes=5, member_boost=3
    )
    got = make_attack("salem", {"classifier": "logistic"}).score(signals, 3, [2, 0, 1])
    expected = logistic_scores(logits, labels, keep, 3, [2], "salem", False)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-6)


@pytest.mark.attack("shokri")
@pytest.mark.attack("salem")
@pytest.mark.parametrize("classifier", ["mlp", "random-forest", "torch-mlp"])
def test_classifiers_are_seeded_and_learn(classifier):
    signals, _, _, keep = random_signals(models=6, records=200, classes=3, member_boost=4)
    for name in ("shokri", "salem"):
        options = {"classifier": classifier, "max_samples": 400, "epochs": 100}
        first = make_attack(name, options).score(signals, 0, [1, 2, 3, 4, 5])
        again = make_attack(name, options).score(signals, 0, [1, 2, 3, 4, 5])
        np.testing.assert_array_equal(first, again)
        assert roc_auc_score(keep[0], first) > 0.65  # salem: top-3 of one shadow
        other = make_attack(name, options | {"seed": 1}).score(signals, 0, [1, 2, 3, 4, 5])
        assert not np.array_equal(first, other)


@pytest.mark.attack("shokri")
@pytest.mark.attack("salem")
def test_errors():
    signals, logits, labels, keep = random_signals(models=3, classes=2)
    with pytest.raises(MiakitError, match="top_k = 3 exceeds the 2 classes"):
        make_attack("salem").score(signals, 0, [1])
    with pytest.raises(MiakitError, match="NaN"):
        make_attack("shokri").score(nan_signals(signals, 1, 2), 0, [1, 2])
    keep = keep.copy()
    keep[1] = True
    keep[2] = False
    one_sided = Signals.from_arrays(logits, labels, keep)
    with pytest.raises(MiakitError, match="all IN"):
        make_attack("shokri", {"shadow_models": 1}).score(one_sided, 0, [1, 2])
