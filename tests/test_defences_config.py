"""The defence settings: unknown keys and contradictory settings are errors that name the key."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from miakit.config.defences import DefenceConfig


def test_defaults_apply_no_defence():
    cfg = DefenceConfig()
    assert not cfg.dp.enabled and not cfg.laplace.enabled and not cfg.temperature_scaling
    assert cfg.laplace.prior_precision == "auto" and cfg.laplace.selection == "nll"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"dp": {"enabled": True, "noise_multiplir": 1.0}}, "noise_multiplir"),
        ({"dp": {"enabled": True}}, "exactly one of noise_multiplier and target_epsilon"),
        ({"dp": {"enabled": True, "noise_multiplier": 1, "target_epsilon": 3}}, "exactly one"),
        ({"dp": {"delta": 1.5}}, "delta"),
        ({"laplace": {"prior_precision": -1.0}}, "prior_precision"),
        ({"laplace": {"prior_precision": "big"}}, "prior_precision"),
        ({"temperature_scaling": True, "laplace": {"enabled": True}}, "choose one calibration"),
        ({"temprature_scaling": True}, "temprature_scaling"),
    ],
)
def test_bad_settings_are_refused(data, message):
    with pytest.raises(ValidationError, match=message):
        DefenceConfig.model_validate(data)


def test_valid_settings_round_trip():
    data = {
        "dp": {"enabled": True, "target_epsilon": 8.0, "max_grad_norm": 0.5, "delta": 1e-6},
        "laplace": {"enabled": True, "prior_precision": 3.0, "predictive": "mc"},
        "apply_to": "targets",
    }
    cfg = DefenceConfig.model_validate(data)
    assert DefenceConfig.model_validate(cfg.model_dump(mode="json")) == cfg
    assert cfg.laplace.prior_precision == 3.0
