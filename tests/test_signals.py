"""Bad signals are stopped with one clear message."""

import numpy as np
import pytest

from miakit.errors import MiakitError
from miakit.signals import Signals

from .synthetic import balanced_keep_matrix


def make(logits=None, labels=None, keep=None):
    keep = balanced_keep_matrix(4, 6) if keep is None else keep
    logits = np.zeros((4, 6, 1, 3)) if logits is None else logits
    labels = np.zeros(6, dtype=np.int64) if labels is None else labels
    return Signals.from_arrays(logits, labels, keep)


def test_nan_logits_are_named_when_read():
    logits = np.zeros((4, 6, 1, 3))
    logits[2, 4, 0, 1] = np.nan
    signals = make(logits)
    with pytest.raises(MiakitError, match=r"model 2 .*record 4"):
        signals.read_logits([0, 1, 2, 3])


def test_wrong_logit_shape():
    with pytest.raises(MiakitError, match=r"\[N, A, C\]"):
        make(np.zeros((4, 5, 1, 3)))


def test_labels_out_of_range():
    with pytest.raises(MiakitError, match="labels must lie in"):
        make(labels=np.full(6, 3))


def test_record_never_out_is_rejected():
    keep = balanced_keep_matrix(4, 6)
    keep[:, 2] = True
    with pytest.raises(MiakitError, match="IN for every model"):
        make(keep=keep)


def test_keep_must_be_bool():
    with pytest.raises(MiakitError, match="bool"):
        make(keep=balanced_keep_matrix(4, 6).astype(int))


def test_logsumexp_matches_scipy_with_large_and_infinite_entries():
    from scipy.special import logsumexp as reference

    from miakit.signals import logsumexp

    z = np.random.default_rng(0).normal(0, 300, (4, 7, 3, 5))
    z[0, 0, 0, 2] = -np.inf
    np.testing.assert_allclose(logsumexp(z), reference(z, axis=-1), rtol=1e-14)
    np.testing.assert_allclose(
        logsumexp(z, axis=1, keepdims=True), reference(z, axis=1, keepdims=True), rtol=1e-14
    )
