"""LT-IQR and its ablations against Python's statistics module and explicit loops."""

import statistics

import numpy as np
import pytest

from miakit.attacks import make_attack
from miakit.errors import MiakitError
from miakit.signals import Signals

from .attack_inputs import random_signals

pytestmark = pytest.mark.attack("lt-iqr")


def with_traces(traces):
    _, logits, labels, keep = random_signals(models=traces.shape[0], records=traces.shape[2])
    return Signals.from_arrays(logits, labels, keep, traces)


def make_traces(models=4, epochs=9, records=40, seed=0):
    rng = np.random.default_rng(seed)
    start = rng.uniform(1, 3, (models, 1, records))
    decay = rng.uniform(0.1, 1, (models, 1, records))
    return start * np.exp(-decay * np.arange(epochs)[None, :, None]) + rng.uniform(
        0, 0.1, (models, epochs, records)
    )


def loop_statistic(trace, statistic):
    """One record's trace (a list) → the statistic, oriented higher = member."""
    if statistic == "iqr":
        q1, _, q3 = statistics.quantiles(trace, n=4, method="inclusive")
        return q3 - q1
    if statistic == "mean":
        return -statistics.fmean(trace)
    if statistic == "slope":
        return -statistics.linear_regression(range(len(trace)), trace).slope
    mid, end = trace[len(trace) // 2], trace[-1]  # the loss-traces code: window point L // 2
    if statistic == "mid-end":
        return mid - end
    if statistic == "1-end/mid":
        return 1 - end / mid
    if statistic == "linf":
        return -max(abs(v) for v in trace)
    p = int(statistic[1])
    return -(sum(abs(v) ** p for v in trace) ** (1 / p))


STATISTICS = ["iqr", "mean", "slope", "mid-end", "1-end/mid", "l1", "l2", "l3", "l4", "linf"]


@pytest.mark.parametrize("statistic", STATISTICS)
@pytest.mark.parametrize("epochs", [None, (2, 7), (2, 8)])
def test_statistics_match_loops(statistic, epochs):
    traces = make_traces()
    signals = with_traces(traces)
    options = {"statistic": statistic} | ({"epochs": list(epochs)} if epochs else {})
    got = make_attack("lt-iqr", options).score(signals, 1, [])
    start, stop = epochs or (0, traces.shape[1])
    expected = [loop_statistic(list(traces[1, start:stop, n]), statistic) for n in range(40)]
    np.testing.assert_allclose(got, expected, rtol=1e-10)


def test_mid_end_of_an_even_window_takes_point_l_over_2():
    traces = np.ones((2, 4, 1))
    traces[0, :, 0] = [4.0, 3.0, 2.0, 1.0]  # L = 4: the middle point is index 2 (loss 2), not 1
    got = make_attack("lt-iqr", {"statistic": "mid-end"}).score(with_traces(traces), 0, [])
    assert got[0] == 2.0 - 1.0


def test_iqr_with_ties_and_flat_traces():
    traces = np.ones((2, 5, 3))
    traces[0, :, 1] = [4.0, 2.0, 2.0, 2.0, 1.0]
    got = make_attack("lt-iqr").score(with_traces(traces), 0, [])
    np.testing.assert_array_equal(got, [0.0, 0.0, 0.0])
    traces[0, :, 2] = [4.0, 3.0, 2.0, 1.0, 0.0]  # quartiles 1 and 3 (linear interpolation)
    assert make_attack("lt-iqr").score(with_traces(traces), 0, [])[2] == 2.0


def test_relative_drop_is_zero_where_mid_loss_is_zero():
    traces = np.ones((2, 3, 2))
    traces[0, :, 0] = [1.0, 0.0, 0.0]
    got = make_attack("lt-iqr", {"statistic": "1-end/mid"}).score(with_traces(traces), 0, [])
    np.testing.assert_array_equal(got, [0.0, 0.0])


def test_errors():
    signals, _, _, _ = random_signals()
    with pytest.raises(MiakitError, match="needs loss traces"):
        make_attack("lt-iqr").score(signals, 0, [])
    traces = make_traces(models=6)
    with pytest.raises(MiakitError, match="reaches past the 9 recorded points"):
        make_attack("lt-iqr", {"epochs": [0, 12]}).score(with_traces(traces), 0, [])
    with pytest.raises(MiakitError, match="at least 2"):
        make_attack("lt-iqr", {"epochs": [3, 4]}).score(with_traces(traces), 0, [])
    with pytest.raises(MiakitError, match="epochs"):
        make_attack("lt-iqr", {"epochs": [5, 2]})
    traces[0, 4, 7] = np.nan
    with pytest.raises(MiakitError, match="record 7"):
        make_attack("lt-iqr").score(with_traces(traces), 0, [])
    with pytest.raises(MiakitError, match=r"\[E\+1, N"):
        Signals.from_arrays(np.stack(signals.logits), signals.labels, signals.keep, traces[..., 1:])
