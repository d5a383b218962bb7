"""The torch thread count a model trains and is queried on."""

from __future__ import annotations

import torch
from torch import nn

from miakit.train.threads import SMALL_MODEL_PARAMETERS, threads_for, torch_threads


def linear_with(parameters: int) -> nn.Module:
    return nn.Linear(parameters - 1, 1)  # (n - 1) weights + 1 bias


def test_small_models_get_one_thread_larger_ones_keep_the_process_setting():
    assert threads_for(linear_with(SMALL_MODEL_PARAMETERS - 1), None) == 1
    assert threads_for(linear_with(SMALL_MODEL_PARAMETERS), None) is None
    assert threads_for(linear_with(10), 3) == 3  # execution.threads wins


def test_torch_threads_sets_the_count_for_the_block_and_restores_it():
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    with torch_threads(other):
        assert torch.get_num_threads() == other
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


def test_the_pipeline_trains_a_small_model_on_one_thread(tmp_path, tiny_config, monkeypatch):
    from miakit import model_jobs, pipeline
    from miakit.store import RunDir

    seen = []
    train_model = model_jobs.train_model

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return train_model(*args, **kwargs)

    monkeypatch.setattr(model_jobs, "train_model", spy)
    torch.set_num_threads(2)
    try:
        config = tiny_config.model_copy(update={"attacks": ["loss"]})
        pipeline.train(pipeline.plan(config, RunDir(tmp_path)), RunDir(tmp_path))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    assert seen and set(seen) == {1}
