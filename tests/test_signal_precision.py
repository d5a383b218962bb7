"""Issue 17, item 1: loss-derived signals keep the order of p_y on confident records.

The issue's input: M = 2, N = 2000, A = 1, C = 10, float32 logits normal × 3, the label's logit
raised by U(25, 50) for members and U(15, 45) for non-members, complementary keep rows. The plain
formula logsumexp(z) − z_y cancels to exactly 0 for about a third of these records; the
right losses are computed here with mpmath at 60 digits.
"""

import mpmath
import numpy as np
import pytest
import torch
from scipy.special import logsumexp
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score, roc_curve

from miakit.attacks import make_attack
from miakit.evaluate.metrics import target_metrics
from miakit.signals import Signals, cross_entropy, true_class_log_prob

mpmath.mp.dps = 60


def confident_input(seed=0):
    rng = np.random.default_rng(seed)
    models, records, classes = 2, 2000, 10
    keep = np.zeros((models, records), dtype=bool)
    keep[0, rng.permutation(records)[: records // 2]] = True
    keep[1] = ~keep[0]
    labels = rng.integers(0, classes, records)
    logits = (rng.normal(size=(models, records, 1, classes)) * 3).astype(np.float32)
    boost = np.where(keep, rng.uniform(25, 50, keep.shape), rng.uniform(15, 45, keep.shape))
    rows, cols = np.arange(models)[:, None], np.arange(records)[None, :]
    logits[rows, cols, 0, labels[None, :]] += boost.astype(np.float32)
    return logits, labels, keep


def mp_loss(z, y):
    """−log p_y in 60-digit arithmetic from the exact float32 logits."""
    z = [mpmath.mpf(float(v)) for v in z]
    return -(z[y] - mpmath.log(mpmath.fsum(mpmath.exp(v) for v in z)))


def sklearn_figures(scores, members):
    fpr, tpr, _ = roc_curve(members, scores, drop_intermediate=False)
    return roc_auc_score(members, scores), tpr[fpr <= 0.01].max()


@pytest.fixture(scope="module")
def issue_input():
    logits, labels, keep = confident_input()
    exact = np.array(
        [[float(mp_loss(logits[m, n, 0], labels[n])) for n in range(2000)] for m in range(2)]
    )
    return logits, labels, keep, exact


def test_the_input_is_where_the_plain_formula_cancels(issue_input):
    logits, labels, _, exact = issue_input
    z = logits.astype(np.float64)[:, :, 0]
    naive = logsumexp(z, axis=-1) - np.take_along_axis(z, labels[None, :, None], -1)[..., 0]
    assert (naive == 0).sum() > 600  # the issue counted 733 records scoring exactly 0
    assert (exact > 0).all()


def test_loss_matches_60_digit_arithmetic(issue_input):
    logits, labels, _, exact = issue_input
    got = cross_entropy(logits, labels)[..., 0]
    np.testing.assert_allclose(got, exact, rtol=1e-12, atol=0)
    np.testing.assert_allclose(-true_class_log_prob(logits, labels)[..., 0], exact, rtol=1e-12)


@pytest.mark.attack("loss")
@pytest.mark.attack("lira-global")
def test_loss_attack_figures_equal_those_of_exact_losses(issue_input):
    logits, labels, keep, exact = issue_input
    signals = Signals.from_arrays(logits, labels, keep)
    loss_scores = make_attack("loss").score_leave_one_out(signals, [0, 1])
    lira_scores = make_attack("lira-global").score_leave_one_out(signals, [0, 1])
    for t in (0, 1):
        auc, tpr = sklearn_figures(-exact[t], keep[t])
        for scores in (loss_scores[t], lira_scores[t]):
            figures = target_metrics(scores, keep[t], [0.01])
            assert figures["auc"] == pytest.approx(auc, abs=1e-12)
            assert figures["tpr@fpr=0.01"] == pytest.approx(tpr, abs=1e-12)
        # with one query the loss is a decreasing function of φ: both rank records alike
        np.testing.assert_array_equal(rankdata(loss_scores[t]), rankdata(lira_scores[t]))
    assert 0.1 < tpr < 0.13 and 0.7 < auc < 0.75  # the issue's seed gave AUC 0.7252, TPR 0.115


def test_loss_traces_keep_the_order_down_to_float16_resolution(issue_input):
    from miakit.train.traces import LossTrace, record_losses

    logits, labels, _, exact = issue_input
    trace = LossTrace(every=1, last_epoch=0)
    x = torch.from_numpy(logits[0, :, 0])  # float32 features taken as the logits themselves
    trace.add(0, record_losses(lambda v: v, x, torch.from_numpy(labels), None))
    row = trace.array()[0]
    assert row.dtype == np.float16
    # float16 rounds the exact loss once: every loss above half its smallest subnormal stays > 0
    expected = exact[0].astype(np.float16)
    np.testing.assert_array_equal(row, expected)
    assert (row > 0).sum() == (exact[0] > 2.0**-25).sum() > 200
