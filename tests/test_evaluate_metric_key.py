"""Metric names: every kind metrics.json holds is formatted as written before the typed key, and
parsed back to the same key."""

from __future__ import annotations

import pytest

from miakit.errors import MiakitError
from miakit.evaluate.metric_key import MetricKey

#: (key, its name in metrics.json as the f-strings wrote it before the key existed)
WRITTEN = [
    (MetricKey("auc"), "auc"),
    (MetricKey("balanced_accuracy"), "balanced_accuracy"),
    (MetricKey("tpr", fpr=0.001), "tpr@fpr=0.001"),
    (MetricKey("tpr", fpr=1e-05), "tpr@fpr=1e-05"),
    (MetricKey("fp", fpr=0.01), "fp@fpr=0.01"),
    (MetricKey("shadow_tpr", fpr=0.0001), "shadow_tpr@fpr=0.0001"),
    (MetricKey("ppv", fpr=0.01, prior=0.1), "ppv@fpr=0.01,prior=0.1"),
    (MetricKey("shadow_ppv", fpr=0.5, prior=0.01), "shadow_ppv@fpr=0.5,prior=0.01"),
    (MetricKey("ppv_target", prior=0.5), "ppv_target@prior=0.5"),
    (MetricKey("ood_fpr", fpr=0.01, set="noise"), "ood_fpr@fpr=0.01,set=noise"),
    (MetricKey("ood_fpr", fpr=0.1, set="scaled-0.5"), "ood_fpr@fpr=0.1,set=scaled-0.5"),
]


@pytest.mark.parametrize(("key", "name"), WRITTEN, ids=[n for _, n in WRITTEN])
def test_formats_as_written_and_parses_back(key, name):
    assert str(key) == name
    assert MetricKey.parse(name) == key


@pytest.mark.parametrize("fpr", [0.5, 0.01, 0.001, 1e-4, 1e-5, 0.25, 3e-7])
def test_any_fpr_round_trips_as_percent_g(fpr):
    name = str(MetricKey("tpr", fpr=fpr))
    assert name == "tpr@fpr=" + format(fpr, "g")
    assert MetricKey.parse(name).fpr == float(format(fpr, "g"))


@pytest.mark.parametrize(
    "name",
    ["tpr@", "tpr@fpr", "tpr@alpha=0.1", "tpr@fpr=x", "ppv@prior=0.1,fpr=0.01", "tpr@fpr=1,fpr=2"],
)
def test_malformed_names_are_errors(name):
    with pytest.raises(MiakitError, match=r"metric name|order"):
        MetricKey.parse(name)


def test_labels_that_would_not_parse_back_are_refused():
    with pytest.raises(MiakitError, match="set"):
        MetricKey("ood_fpr", fpr=0.1, set="a,b")
    with pytest.raises(MiakitError, match="name"):
        MetricKey("tpr@x")
