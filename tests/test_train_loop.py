"""The one list of options a training step does not support: each is refused by name, by the
steps that list it only."""

from __future__ import annotations

import re

import pytest

from miakit.config import TrainConfig
from miakit.errors import MiakitError
from miakit.models import build_model
from miakit.train.loop import REFUSED, check_options

#: A config (and model dropout) that uses each option a step may refuse.
USING = {
    "train.early_stopping_patience": ({"early_stopping_patience": 2}, 0.0),
    "train.lookahead": ({"lookahead": True}, 0.0),
    "train.batched": ({"batched": True}, 0.0),
    "train.augment.cutmix": ({"augment": {"cutmix": 0.5}}, 0.0),
    "model.dropout": ({}, 0.5),
}


def test_every_refused_option_has_a_case_here():
    assert {s for refused in REFUSED.values() for s in refused} <= set(USING)


@pytest.mark.parametrize("setting", sorted(USING))
@pytest.mark.parametrize("step", sorted(REFUSED))
def test_an_option_is_refused_exactly_by_the_steps_listing_it(step, setting):
    settings, dropout = USING[setting]
    cfg = TrainConfig.model_validate(settings)
    model = build_model("mlp", (12,), 4, hidden=[8], dropout=dropout)
    if setting in REFUSED[step]:
        with pytest.raises(MiakitError, match=re.escape(setting) + " is not supported"):
            check_options(step, cfg, model)
    else:
        check_options(step, cfg, model)
    check_options(step, TrainConfig(), build_model("mlp", (12,), 4, hidden=[8]))
