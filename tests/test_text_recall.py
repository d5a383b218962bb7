"""ReCaLL on causal language models: the query's log-probs of each record with a non-member
prefix before it against a plain loop over the model's log-softmax, the attack's score against
its formula computed plainly, plan's checks of the prefix, and the attack in an audit."""

import math
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from miakit import pipeline, tokens
from miakit.attacks import make_attack
from miakit.errors import MiakitError
from miakit.models import build_model
from miakit.query import query_tokens
from miakit.store import RunDir, load_npy

from .attack_inputs import random_token_signals
from .text_corpus import recall_config


def _log_softmax(z: np.ndarray) -> np.ndarray:
    top = z.max()
    return z - (top + math.log(float(np.sum(np.exp(z - top)))))


def test_the_query_scores_each_record_after_the_prefix_as_a_plain_loop_does():
    texts, prefix_texts = ["heLLo", "abc", "ZZ Top!"], ["one pin", "x"]
    x = tokens.encode(texts, 10)
    prefix = tokens.encode_prefix(prefix_texts)
    assert prefix.tolist() == [
        tokens.BOS, *b"one pin", tokens.EOS, tokens.BOS, *b"x", tokens.EOS
    ]  # fmt: skip
    torch.manual_seed(0)
    model = build_model("gpt", (10,), 2, layers=2, width=32, heads=4, context=len(prefix) + 10)
    model.eval()
    _, stats = query_tokens(model, torch.from_numpy(x), chunk=2, prefix=torch.from_numpy(prefix))
    plain = query_tokens(model, torch.from_numpy(x))[1]
    assert set(stats) == {*tokens.TOKEN_STATS, tokens.RECALL_STAT} and set(plain) == set(
        tokens.TOKEN_STATS
    )
    recall = stats[tokens.RECALL_STAT]
    assert recall.shape == (3, 9) and recall.dtype == np.float32
    for n, text in enumerate(texts):
        record = [tokens.BOS, *text.encode(), tokens.EOS]  # unpadded
        joined = torch.tensor([[*prefix.tolist(), *record]])
        with torch.no_grad():  # the model on the whole sequence, no padding; float64 by hand
            logits = model(joined)[0].double().numpy()
        for t in range(1, 10):
            if t >= len(record):
                assert np.isnan(recall[n, t - 1])
                continue
            position = len(prefix) + t - 1  # predicts joined token len(prefix) + t
            expected = _log_softmax(logits[position])[record[t]]
            assert recall[n, t - 1] == pytest.approx(expected, rel=1e-5, abs=1e-6)
        # the prefix changes the record's log-probs (the model reads it)
        assert not np.allclose(
            recall[n, : len(record) - 1], plain["token_logprobs"][n, : len(record) - 1]
        )


def test_the_gpt_refuses_a_context_shorter_than_its_records():
    with pytest.raises(MiakitError, match=r"model\.context \(8\) must be at least"):
        build_model("gpt", (10,), 2, context=8)


@pytest.mark.attack("recall")
def test_recall_is_the_ratio_of_conditional_to_plain_log_likelihood():
    signals, tok, real = random_token_signals(recall=True)
    scores = make_attack("recall").score_targets(signals, [0, 2], None)
    for row, target in enumerate([0, 2]):
        for n in range(len(real)):
            with_prefix = [float(v) for v in tok.logprobs_recall[target][n, : real[n]]]
            alone = [float(v) for v in tok.logprobs[target][n, : real[n]]]
            ll_p, ll = sum(with_prefix) / len(with_prefix), sum(alone) / len(alone)
            assert scores[row, n] == pytest.approx(ll_p / ll)
            # a prefix that lowers the record's log-likelihood more scores higher (member)
            assert scores[row, n] > 1 or ll_p >= ll
    without = replace(signals, tokens=replace(tok, logprobs_recall=None))
    assert "query.recall_prefix" in make_attack("recall").unavailable(without)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["query.recall_prefix=null"], r"^attacks: recall needs query.recall_prefix"),
        (
            ["model.context=null"],
            r"^query.recall_prefix: its \d+ tokens and a record's \d+ do not fit",
        ),
        (["query.recall_shots=3"], r"^query.recall_shots: 3 texts asked for but .* holds 2"),
        (
            ["query.recall_prefix=missing.txt"],
            r"^query.recall_prefix: cannot read /\S*/missing.txt",
        ),
        (
            ["query.recall_prefix=c.npz"],
            r"^query.recall_prefix: /\S*/c.npz is not a .txt, .jsonl or .csv",
        ),
        (["model.context=20"], r"^model.context \(20\) must be at least"),
    ],
)
def test_plan_checks_the_recall_prefix_before_anything_trains(tmp_path, overrides, message):
    config = recall_config(tmp_path, *overrides)
    with pytest.raises(MiakitError, match=message):
        pipeline.plan(config, RunDir(tmp_path / "run"))
    assert not (tmp_path / "run" / "run.yaml").exists()


def test_plan_refuses_a_prefix_of_pool_records(tmp_path):
    config = recall_config(tmp_path)
    first = (tmp_path / "c.txt").read_text().splitlines()[3]
    (tmp_path / "p.txt").write_text(f"not in the pool\n{first}\n")
    with pytest.raises(MiakitError, match=r"^query.recall_prefix: .* is a pool record"):
        pipeline.plan(config, RunDir(tmp_path / "run"))


def test_recall_runs_in_an_audit_and_a_new_prefix_queries_again_without_training(
    tmp_path, one_thread
):
    config = recall_config(tmp_path)
    run = RunDir(tmp_path / "run")
    pipeline.audit(config, run, log=None)
    scores = load_npy(run.scores("recall"))
    assert scores.shape == (4, 40) and np.isfinite(scores).all()
    recall = load_npy(run.token_stat(0, tokens.RECALL_STAT))
    assert recall.shape == load_npy(run.token_stat(0, "token_logprobs")).shape
    trained_at = (
        run.meta(0).stat().st_mtime_ns,
        (run.model_dir(0) / "weights.safetensors").stat().st_mtime_ns,
    )
    (tmp_path / "p.txt").write_text("a different text no model saw\n")
    pipeline.audit(config, run, log=None)
    assert (run.model_dir(0) / "weights.safetensors").stat().st_mtime_ns == trained_at[1]
    again = load_npy(run.token_stat(0, tokens.RECALL_STAT))
    assert not np.array_equal(np.nan_to_num(again), np.nan_to_num(recall))
    assert not np.array_equal(load_npy(run.scores("recall")), scores)
    without = config.model_copy(
        update={
            "query": config.query.model_copy(update={"recall_prefix": None}),
            "attacks": ["lm-loss"],
        }
    )
    pipeline.audit(without, run, log=None)
    assert not run.token_stat(0, tokens.RECALL_STAT).exists()


def test_run_yaml_records_the_prefix_by_its_absolute_path(tmp_path, monkeypatch):
    config = recall_config(tmp_path, "query.recall_prefix=p.txt")
    monkeypatch.chdir(tmp_path)
    pipeline.plan(config, RunDir(tmp_path / "run"), log=None)
    monkeypatch.chdir(Path(__file__).parent)  # later stages may run anywhere
    recorded = pipeline.run_config(RunDir(tmp_path / "run")).query.recall_prefix
    assert recorded == tmp_path / "p.txt" and recorded.is_absolute()
    assert pipeline.status(RunDir(tmp_path / "run"))  # its query hashes read the prefix
