"""Secret canaries in text records (the Secret Sharer): their texts, the log-perplexity of every
alternative against a plain loop over the model's log-softmax, exposure against a brute-force
ranking, plan's checks, and the DP audit's bounds and exposure from a tiny text audit."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from typer.testing import CliRunner

from miakit import pipeline, tokens
from miakit.cli import app
from miakit.config import load_config
from miakit.data.canaries import draw_secrets, insert_secrets, secret_texts
from miakit.data.user import load_user
from miakit.errors import MiakitError
from miakit.evaluate.exposure import exposure
from miakit.models import build_model
from miakit.query import log_perplexity
from miakit.store import RunDir, load_npy, save_npy

from .text_corpus import write_corpus

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "text_lm.yaml"


def _brute_exposure(values: np.ndarray, secrets: np.ndarray, i: int) -> float:
    """Canary i's exposure: sort its secret and every secret no canary holds by log-perplexity,
    the canary after the alternatives it ties with, and read its 1-based position."""
    others = set(secrets.tolist()) - {int(secrets[i])}
    candidates = [
        (float(values[r]), 1 if r == secrets[i] else 0, r)
        for r in range(len(values))
        if r not in others
    ]
    ranked = sorted(candidates)
    rank = 1 + next(k for k, c in enumerate(ranked) if c[2] == secrets[i])
    return math.log2(len(candidates)) - math.log2(rank)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exposure_matches_a_brute_force_ranking_ties_included(seed):
    draw = np.random.default_rng(seed)
    values = draw.integers(0, 30, size=100).astype(float)  # many ties
    secrets = draw.choice(100, size=7, replace=False)
    got = exposure(values, secrets)
    for i in range(7):
        assert got[i] == pytest.approx(_brute_exposure(values, secrets, i), abs=1e-12)


def test_exposure_spans_zero_to_log2_of_the_candidates():
    values = np.arange(10.0)
    # secret 0 is the least perplexing of its 9 candidates, secret 9 the most
    assert exposure(values, np.array([0, 9])).tolist() == pytest.approx([math.log2(9), 0.0])
    with pytest.raises(MiakitError, match="distinct"):
        exposure(values, np.array([1, 1]))
    with pytest.raises(MiakitError, match="nothing to rank"):
        exposure(values[:2], np.array([0, 1]))


def test_log_perplexity_is_the_sum_of_minus_log2_p_over_real_tokens():
    texts = ["pin 0042", "pin 9", "a longer one"]
    x = tokens.encode(texts, 16)
    torch.manual_seed(1)
    model = build_model("gpt", (16,), 2, layers=2, width=32, heads=4).eval()
    got = log_perplexity(model, torch.from_numpy(x), chunk=2)
    for n, text in enumerate(texts):
        ids = [tokens.BOS, *text.encode(), tokens.EOS]
        with torch.no_grad():
            logits = model(torch.tensor([[*ids, tokens.PAD]]))[0].double().numpy()
        bits = 0.0
        for t in range(1, len(ids)):
            z = logits[t - 1]
            top = z.max()
            bits -= (z[ids[t]] - top - math.log(np.sum(np.exp(z - top)))) / math.log(2)
        assert got[n] == pytest.approx(bits, rel=1e-6)  # float32 logits of other batches


def test_secret_canaries_replace_their_records_and_draw_distinct_secrets(tmp_path):
    pool = load_user(write_corpus(tmp_path / "c.txt", 20))
    secrets = draw_secrets(5, 2, np.random.default_rng(0))
    assert len(set(secrets.tolist())) == 5 and secrets.min() >= 0 and secrets.max() < 100
    fmt = "the very long secret number of this canary is {}"
    planted = insert_secrets(pool, np.array([1, 3, 5, 7, 9]), secrets, fmt, 2)
    texts = [tokens.decode(r).decode() for r in planted.x]
    original = [tokens.decode(r).decode() for r in pool.x]
    assert (
        texts[3] == fmt.format(f"{secrets[1]:02d}")
        and secret_texts(fmt, 2, np.arange(100))[secrets[1]] == texts[3]
    )
    assert [t for i, t in enumerate(texts) if i % 2 == 0 or i > 9] == [
        t for i, t in enumerate(original) if i % 2 == 0 or i > 9
    ]
    assert planted.x.shape[1] == max(pool.x.shape[1], len(fmt) - 2 + 2 + 2)
    with pytest.raises(MiakitError, match="need more than 10"):
        draw_secrets(10, 1, np.random.default_rng(0))


def _config(tmp_path: Path, *overrides: str, records: int = 40):
    corpus = write_corpus(tmp_path / "c.txt", records)
    return load_config(
        CONFIG,
        [
            f"data.path={corpus}",
            "split.num_models=12",
            "model.width=32",
            "train.epochs=3",
            "execution.threads=1",
            "dp_audit.canaries.count=8",
            "dp_audit.canaries.kind=secret",
            "dp_audit.canaries.secret_digits=2",
            "attacks=[lm-loss, min-k]",
            *overrides,
        ],
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["dp_audit.canaries.kind=mislabelled"],
            r"^dp_audit.canaries.kind: mislabelled canaries are for labelled",
        ),
        (
            ["dp_audit.canaries.count=10", "dp_audit.canaries.secret_digits=1"],
            r"^dp_audit.canaries.count: 10 secret canaries need more than 10\^1",
        ),
        (
            ["dp_audit.canaries.secret_digits=13"],
            r"dp_audit.canaries.secret_digits: .*at most 12 \(\|R\| ≤ 10\^12, exposure ≤ 39.9 bits",
        ),
        (
            ["dp_audit.canaries.secret_samples=99"],
            r"dp_audit.canaries.secret_samples: .*greater than or equal to 100",
        ),
        (
            ["dp_audit.canaries.secret_samples=100001"],
            r"dp_audit.canaries.secret_samples: .*less than or equal to 100000",
        ),
        (
            ["dp_audit.canaries.secret_format=no placeholder"],
            r"secret_format: .*must hold \{\} once",
        ),
    ],
)
def test_plan_checks_text_canaries_before_anything_trains(tmp_path, overrides, message):
    with pytest.raises(MiakitError, match=message):
        pipeline.plan(_config(tmp_path, *overrides), RunDir(tmp_path / "run"))
    assert not (tmp_path / "run" / "run.yaml").exists()


def test_text_records_take_natural_canaries_unchanged(tmp_path):
    config = _config(tmp_path, "dp_audit.canaries.kind=natural")
    planned = pipeline.plan(config, RunDir(tmp_path / "run"), log=None)
    assert np.array_equal(planned.pool.x, load_user(tmp_path / "c.txt").x)
    canaries = pipeline.configured_canaries(config, 40)
    keep = planned.keep[:, canaries]
    assert len(canaries) == 8 and keep.any(axis=0).all() and (~keep).any(axis=0).all()


def test_secret_canaries_are_for_text_records(tmp_path, tiny_config):
    config = tiny_config.model_copy(
        update={
            "dp_audit": load_config(
                None, ["dp_audit.canaries.count=4", "dp_audit.canaries.kind=secret"]
            ).dp_audit
        }
    )
    with pytest.raises(
        MiakitError, match=r"^dp_audit.canaries.kind secret: for text records, not digits"
    ):
        pipeline.plan(config, RunDir(tmp_path / "run"))


def test_a_text_audit_with_secret_canaries_bounds_epsilon_and_measures_exposure(
    tmp_path, one_thread
):
    config = _config(tmp_path)
    run = RunDir(tmp_path / "run")
    pipeline.audit(config, run, log=None)
    audit = json.loads((tmp_path / "run" / "audit.json").read_text())
    canaries = np.array(audit["canary_records"])
    keep = load_npy(run.keep)
    secrets = np.array(audit["exposure"]["secrets"])
    for name in ("lm-loss", "min-k"):
        one_run = audit["attacks"][name]["one_run"]
        assert 0 <= one_run["epsilon_lower"] < math.inf and len(one_run["per_target"]) == 12
    found = audit["exposure"]
    assert found["candidates"] == 100 - 8 + 1 and found["max_bits"] == pytest.approx(math.log2(93))
    for row, t in enumerate(audit["targets"]):
        values = load_npy(run.token_stat(t, tokens.SECRET_STAT))
        assert values.shape == (100,)
        for i in range(8):
            assert found["per_target"][row][i] == pytest.approx(_brute_exposure(values, secrets, i))
    members = keep[audit["targets"]][:, canaries]
    per = np.array(found["per_target"])
    assert found["members_mean"] == pytest.approx(per[members].mean())
    assert found["non_members_mean"] == pytest.approx(per[~members].mean())
    assert 0 <= found["bounds"]["one_run"]["epsilon_lower"] < math.inf
    # every canary holds its secret's text in the pool the models trained on
    pool = pipeline.load_plan(run).pool
    fmt = config.dp_audit.canaries.secret_format
    for record, secret in zip(canaries, secrets, strict=True):
        assert tokens.decode(pool.x[record]).decode() == fmt.format(f"{secret:02d}")
    report = (tmp_path / "run" / "report.html").read_text()
    assert "Exposure (Carlini et al. 2019" in report and "exposure (secret canaries)" in report
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["canaries_left_out"]["count"] == 8
    table = pd.read_csv(tmp_path / "run" / "tables" / "exposure.csv")
    assert len(table) == 12 * 8 and table["member"].sum() == members.sum()
    for row in table.itertuples():
        i = int(np.flatnonzero(canaries == row.record)[0])
        assert row.secret == secrets[i] and row.member == keep[row.target, row.record]
        assert row.exposure_bits == pytest.approx(per[audit["targets"].index(row.target), i])
    shown = CliRunner().invoke(app, ["audit-dp", str(tmp_path / "run")])
    assert shown.exit_code == 0 and "│ exposure" in shown.output
    assert f"{found['members_mean']:.2f} where trained on" in " ".join(shown.output.split())
    written = (tmp_path / "run" / "audit.json").stat().st_mtime_ns
    pipeline.audit(config, run, log=None)  # a finished audit is current: nothing is redone
    assert (tmp_path / "run" / "audit.json").stat().st_mtime_ns == written
    table.assign(exposure_bits=13.0).to_csv(tmp_path / "run" / "tables" / "exposure.csv")
    pipeline.audit(config, run, log=None)  # an edited table is stale: the DP audit rewrites it
    assert pd.read_csv(tmp_path / "run" / "tables" / "exposure.csv").equals(table)
    natural = config.model_copy(
        update={
            "dp_audit": load_config(
                None, ["dp_audit.canaries.count=8", "dp_audit.canaries.kind=natural"]
            ).dp_audit
        }
    )
    pipeline.audit(natural, run, log=None)  # no secrets now: no exposure, no stale table
    assert "exposure" not in json.loads((tmp_path / "run" / "audit.json").read_text())
    assert not (tmp_path / "run" / "tables" / "exposure.csv").exists()


@pytest.mark.slow
def test_the_ready_secrets_config_finds_exposure_and_bounds_epsilon(tmp_path):
    from .text_corpus import write_prefix

    corpus = write_corpus(tmp_path / "corpus.txt", 300)
    prefix = write_prefix(tmp_path / "prefix.txt", corpus)
    ready = Path(__file__).resolve().parents[1] / "configs" / "text_lm_secrets.yaml"
    overrides = [
        f"data.path={corpus}",
        f"query.recall_prefix={prefix}",
        "dp_audit.canaries.secret_digits=3",
    ]
    run = RunDir(tmp_path / "run")
    metrics = pipeline.audit(load_config(ready, overrides), run, log=None)
    assert metrics["recall"]["auc"]["mean"] > 0.5 and metrics["lm-loss"]["auc"]["mean"] > 0.55
    audit = json.loads((tmp_path / "run" / "audit.json").read_text())
    assert set(audit["attacks"]) == {"lm-loss", "min-k", "recall"}
    found = audit["exposure"]
    assert found["candidates"] == 1000 - 20 + 1
    # the models memorise the secrets they trained on: more exposure than the others
    assert found["members_mean"] > found["non_members_mean"]
    assert all(0 <= a["one_run"]["epsilon_lower"] < math.inf for a in audit["attacks"].values())


def test_a_text_audit_of_six_digit_secrets_estimates_exposure_from_sampled_alternatives(
    tmp_path, one_thread
):
    sampled = ["dp_audit.canaries.secret_digits=6", "dp_audit.canaries.secret_samples=200"]
    config = _config(tmp_path, *sampled, "train.epochs=1")  # exposure's plumbing, not memory
    run = RunDir(tmp_path / "run")
    pipeline.audit(config, run, log=None)
    audit = json.loads((tmp_path / "run" / "audit.json").read_text())
    found = audit["exposure"]
    assert found["method"] == "skew-normal" and found["sampled_alternatives"] == 200
    assert found["candidates"] == 10**6 - 8 + 1
    secrets = np.array(found["secrets"])
    canaries = np.array(audit["canary_records"])
    pool = pipeline.load_plan(run).pool
    fmt = config.dp_audit.canaries.secret_format
    for record, secret in zip(canaries, secrets, strict=True):
        assert tokens.decode(pool.x[record]).decode() == fmt.format(f"{secret:06d}")
    alternatives = 10**6 - 8
    for row, t in enumerate(audit["targets"]):
        values = load_npy(run.token_stat(t, tokens.SECRET_STAT))
        assert values.shape == (8 + 200,)  # the canaries' texts, then the sampled alternatives'
        # the first 8: each canary's log-perplexity, the sum of −log2 p of its record's tokens
        logprobs = load_npy(run.token_stat(t, "token_logprobs"))[canaries]
        own = -np.nansum(logprobs.astype(np.float64), axis=1) / math.log(2)
        np.testing.assert_allclose(values[:8], own, rtol=1e-4)
        fit = stats.skewnorm.fit(values[8:])
        share = stats.skewnorm.cdf(values[:8], *fit)
        expected = math.log2(alternatives + 1) - np.log2(1 + alternatives * share)
        np.testing.assert_allclose(found["per_target"][row], expected, rtol=1e-6, atol=1e-9)
        assert found["skew_normal_fits"][row]["scale"] == pytest.approx(fit[2])
    assert 0 <= found["bounds"]["one_run"]["epsilon_lower"] < math.inf
    report = (tmp_path / "run" / "report.html").read_text()
    assert "estimated from a skew-normal fit to 200 sampled alternatives of 999992" in report
    shown = CliRunner().invoke(app, ["audit-dp", str(tmp_path / "run")])
    assert shown.exit_code == 0
    assert "skew-normal fit to 200 sampled alternatives" in " ".join(shown.output.split())
    # another sample size scores other texts: the models are queried again, not retrained
    weights = run.weights(0).stat().st_mtime_ns
    more = config.model_copy(deep=True)
    more.dp_audit.canaries.secret_samples = 300
    pipeline.audit(more, run, log=None)
    assert load_npy(run.token_stat(0, tokens.SECRET_STAT)).shape == (8 + 300,)
    assert run.weights(0).stat().st_mtime_ns == weights
    again = json.loads((tmp_path / "run" / "audit.json").read_text())["exposure"]
    assert again["sampled_alternatives"] == 300 and len(again["skew_normal_fits"]) == 12
    save_npy(run.token_stat(0, tokens.SECRET_STAT), np.zeros(8 + 200))  # as of another sample
    with pytest.raises(MiakitError, match=r"secret_log_perplexity.npy changed since"):
        pipeline.audit_dp(run, more)
