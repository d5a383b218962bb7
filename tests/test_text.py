"""Text records and causal language models: tokens, the text pool, the tiny GPT, its training and
query, the LM attacks against independent computations, plan's refusals, and the audit."""

import html
import json
import math
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import miakit
from miakit import pipeline, tokens
from miakit.attacks import make_attack
from miakit.cli import app
from miakit.config import load_config
from miakit.data.user import load_user
from miakit.errors import MiakitError
from miakit.models import build_model
from miakit.query import query_tokens
from miakit.store import RunDir, load_npy
from miakit.train.lm import train_lm
from miakit.validate import resolve_attacks

from .attack_inputs import random_token_signals
from .text_corpus import corpus, write_corpus

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "text_lm.yaml"


def test_tokens_frame_each_record_and_round_trip():
    ids = tokens.encode(["hé", "ab c"], 8)
    assert ids.dtype == np.int64 and ids.shape == (2, 8)
    assert list(ids[0]) == [tokens.BOS, 104, 195, 169, tokens.EOS] + [tokens.PAD] * 3
    assert tokens.decode(ids[0]) == "hé".encode() and tokens.decode(ids[1]) == b"ab c"
    assert tokens.target_mask(ids).sum(axis=1).tolist() == [4, 5]  # the bytes and EOS
    assert tokens.zlib_bytes(ids).tolist() == [
        len(zlib.compress(t, 9)) for t in (b"h\xc3\xa9", b"ab c")
    ]
    with pytest.raises(ValueError, match="record 0 has 3 bytes"):
        tokens.encode(["abc"], 4)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("r.txt", "one\n\ntwo é\n"),
        ("r.jsonl", '{"text": "one", "label": 1}\n{"text": "two é"}\n'),
        ("r.csv", 'text,label\none,0\n"two é",\n'),
    ],
)
def test_text_files_become_a_pool_of_token_ids(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    pool = load_user(path)
    assert pool.is_text and not pool.is_image and pool.vocab_size == tokens.VOCAB_SIZE
    assert pool.x.shape == (2, len("two é".encode()) + 2) and pool.y.tolist() == [0, 0]
    assert [tokens.decode(r).decode() for r in pool.x] == ["one", "two é"]


def test_the_fingerprint_follows_the_text(tmp_path):
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("one\ntwo\n")
    b.write_text("one\ntwp\n")
    assert load_user(a).fingerprint() == load_user(a).fingerprint()
    assert load_user(a).fingerprint() != load_user(b).fingerprint()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("r.jsonl", '{"text": "a"}\nnot json\n', r"r.jsonl:2: not a JSON object"),
        ("r.jsonl", '{"text": "a"}\n{"label": 1}\n', r"r.jsonl:2: 'text' must be"),
        ("r.jsonl", '{"text": "a"}\n{"text": "b", "label": -1}\n', r"r.jsonl:2: 'label'"),
        ("r.csv", "words\na\nb\n", r"needs a 'text' column"),
        ("r.csv", "text,label\na,x\nb,1\n", r"r.csv:2: 'label' must be an integer"),
        ("r.txt", "only one\n", r"holds 1 records"),
        ("r.txt", "a\n" + "b" * 1023 + "\n", r"a record of 1023 bytes"),
    ],
)
def test_malformed_text_records_get_one_clear_error(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(MiakitError, match=message):
        load_user(tmp_path / name)


def _gpt(length: int = 12, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_model("gpt", (length,), 2, layers=2, width=32, heads=4, hidden=[256])


def test_the_gpt_is_causal_and_predicts_every_next_token():
    model = _gpt().eval()
    x = torch.from_numpy(tokens.encode(["hello", "abc"], 12))
    logits = model(x)
    assert logits.shape == (2, 11, tokens.VOCAB_SIZE)
    changed = x.clone()
    changed[:, 6:] = 65
    with torch.no_grad():
        assert torch.equal(model(changed)[:, :6], logits[:, :6].detach())
        assert not torch.allclose(model(changed)[:, 6:], logits[:, 6:].detach())
    with pytest.raises(MiakitError, match=r"multiple of model\.heads"):
        build_model("gpt", (12,), 2, width=30, heads=4)
    with pytest.raises(MiakitError, match="takes text records"):
        build_model("gpt", (8, 8, 1), 2)


def test_training_lowers_the_token_loss_reproducibly(one_thread):
    x = torch.from_numpy(tokens.encode(corpus(64), 40))
    cfg = load_config(None, ["train.epochs=6", "train.lr=0.003", "train.batch_size=16"]).train
    before = -query_tokens(_gpt(40).eval(), x)[0][:, 0, 0].mean()
    first, again = _gpt(40), _gpt(40)
    report = train_lm(first, x, cfg, order_seed=3)
    train_lm(again, x, cfg, order_seed=3)
    after = -query_tokens(first, x)[0][:, 0, 0].mean()
    assert report.steps == 6 * 4 and after < 0.6 * before
    for p, q in zip(first.parameters(), again.parameters(), strict=True):
        assert torch.equal(p, q)


def test_query_keeps_per_token_statistics_not_the_vocabulary():
    model = _gpt().eval()
    x = torch.from_numpy(tokens.encode(["heLLo", "abc", "ZZ Top"], 12))
    logits, stats = query_tokens(model, x, chunk=2)
    with torch.no_grad():  # brute force, float64, over the full vocabulary
        full = model(x).double().numpy()
    assert logits.shape == (3, 1, 2) and {k: v.shape for k, v in stats.items()} == dict.fromkeys(
        tokens.TOKEN_STATS, (3, 11)
    )
    for n in range(3):
        real = int((x[n, 1:] != tokens.PAD).sum())
        picked = []
        for t in range(11):
            z = full[n, t]
            logp = z - (np.log(np.sum(np.exp(z - z.max()))) + z.max())
            if t >= real:
                assert np.isnan(stats["token_logprobs"][n, t]) and np.isnan(stats["token_mu"][n, t])
                continue
            p = np.exp(logp)
            mu = float(np.sum(p * logp))
            sigma = math.sqrt(float(np.sum(p * (logp - mu) ** 2)))
            picked.append(logp[int(x[n, t + 1])])
            assert stats["token_logprobs"][n, t] == pytest.approx(picked[-1], rel=1e-5)
            assert stats["token_mu"][n, t] == pytest.approx(mu, rel=1e-5)
            assert stats["token_sigma"][n, t] == pytest.approx(sigma, rel=1e-5)
        mean = sum(picked) / len(picked)
        lowered = tokens.encode([tokens.decode(x[n]).decode().lower()], 12)
        again = query_tokens(model, torch.from_numpy(lowered))[1]["token_logprobs"]
        np.testing.assert_array_equal(stats["token_logprobs_lower"][n], again[0])
        assert logits[n, 0, 0] == pytest.approx(mean, rel=1e-5)
        assert logits[n, 0, 1] == pytest.approx(math.log(1 - math.exp(mean)), rel=1e-5)


def _lowest_mean(values: list[float], k: float) -> float:
    count = max(1, int(len(values) * k + 1e-9))
    return sum(sorted(values)[:count]) / count


@pytest.mark.attack("lm-loss")
@pytest.mark.attack("zlib")
@pytest.mark.attack("lowercase")
@pytest.mark.attack("min-k")
@pytest.mark.attack("min-k-plus-plus")
@pytest.mark.parametrize("k", [0.2, 0.5, 1.0])
def test_lm_attacks_match_their_papers_formulas_computed_plainly(k):
    signals, tok, real = random_token_signals(records=5, length=9)
    scores = {
        name: make_attack(name, {"k": k} if name.startswith("min-k") else None).score_targets(
            signals, [0, 1], None
        )
        for name in ("lm-loss", "zlib", "lowercase", "min-k", "min-k-plus-plus")
    }
    for row, target in enumerate([0, 1]):
        for n in range(len(real)):
            lp = [float(v) for v in tok.logprobs[target][n, : real[n]]]
            mu = [float(v) for v in tok.mu[target][n, : real[n]]]
            sd = [float(v) for v in tok.sigma[target][n, : real[n]]]
            nll = -sum(lp) / len(lp)
            lower = [float(v) for v in tok.logprobs_lower[target][n, : real[n]]]
            assert scores["lowercase"][row, n] == pytest.approx(nll / (sum(lower) / len(lower)))
            plus = [(a - b) / c if c > 0 else 0.0 for a, b, c in zip(lp, mu, sd, strict=True)]
            assert scores["lm-loss"][row, n] == pytest.approx(-nll)
            assert scores["zlib"][row, n] == pytest.approx(-nll / int(tok.zlib_bytes[n]))
            assert scores["min-k"][row, n] == pytest.approx(_lowest_mean(lp, k))
            assert scores["min-k-plus-plus"][row, n] == pytest.approx(_lowest_mean(plus, k))


def test_zlib_attack_reads_the_texts_compressed_length():
    texts = ["aaaaaaaaaaaaaaaaaaaa", "the quick brown fox"]
    ids = tokens.encode(texts, 24)
    assert tokens.zlib_bytes(ids).tolist() == [len(zlib.compress(t.encode(), 9)) for t in texts]


def test_lm_attacks_say_why_they_cannot_run_without_token_outputs():
    signals = replace(random_token_signals()[0], tokens=None)
    assert "per-token outputs" in make_attack("min-k").unavailable(signals)
    assert make_attack("min-k").unavailable(signals) is not None
    with pytest.raises(MiakitError, match=r"attack_options\.min-k\.k"):
        make_attack("min-k", {"k": 0})


def test_attacks_all_leaves_the_lm_attacks_out():
    everything = resolve_attacks(["all"])
    assert "loss" in everything and not {"lm-loss", "zlib", "min-k"} & set(everything)


def _text_config(corpus_path: Path, *overrides: str):
    return load_config(
        CONFIG,
        [
            f"data.path={corpus_path}",
            "split.num_models=4",
            "model.width=32",
            "train.epochs=2",
            "execution.threads=1",
            *overrides,
        ],
    )


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.arch=mlp"], r"^model.arch: user:c.txt holds text records"),
        (["attacks=[confidence]"], r"^attacks: confidence does not apply to a language model"),
        (["train.augment.flip=true"], r"^train.augment: not supported for text records"),
        (["query.augmentations=2"], r"^query.augmentations: not supported for text"),
        (["train.record_trace=true"], r"^train.record_trace: not supported"),
        (["defences.temperature_scaling=true"], r"^defences: not supported"),
        (["attack_options={}"], r"^attack_options.rmia: on text records set signal: softmax"),
        (
            ["attack_options={rmia: {signal: softmax, temperature: 1}}"],
            r"^attack_options.rmia: .*gamma: 1",
        ),
    ],
)
def test_plan_refuses_what_does_not_apply_to_text(tmp_path, overrides, message):
    config = _text_config(write_corpus(tmp_path / "c.txt", 40), *overrides)
    with pytest.raises(MiakitError, match=message):
        pipeline.plan(config, RunDir(tmp_path / "run"))
    assert not (tmp_path / "run" / "run.yaml").exists()


def test_plan_refuses_text_models_and_attacks_on_other_data(tmp_path, tiny_config):
    gpt = tiny_config.model_copy(
        update={"model": tiny_config.model.model_copy(update={"arch": "gpt"})}
    )
    with pytest.raises(MiakitError, match=r"^model.arch: gpt takes text records"):
        pipeline.plan(gpt, RunDir(tmp_path / "a"))
    with pytest.raises(MiakitError, match=r"^attacks: min-k reads a language model's per-token"):
        pipeline.plan(tiny_config.model_copy(update={"attacks": ["min-k"]}), RunDir(tmp_path / "b"))


def test_gpt_options_leave_other_models_hashes_alone():
    base = load_config(None, []).training_inputs()
    assert base == load_config(None, ["model.width=128", "model.layers=3"]).training_inputs()
    gpt = load_config(None, ["model.arch=gpt"]).training_inputs()
    assert gpt != load_config(None, ["model.arch=gpt", "model.width=128"]).training_inputs()


def test_a_text_audit_runs_end_to_end_from_the_cli(tmp_path, one_thread):
    path = tmp_path / "c.txt"
    lines = [*corpus(39), "<b>my pin & 4821</b>"]
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "run"
    args = ["audit", "--config", str(CONFIG), "--out", str(out), "--set", f"data.path={path}"]
    attacks = ["lm-loss", "zlib", "lowercase", "min-k", "min-k-plus-plus", "lira-online"]
    for setting in (
        "split.num_models=4",
        "model.width=32",
        "train.epochs=2",
        "execution.threads=1",
        f"attacks=[{', '.join(attacks)}]",  # RMIA, often the strongest, exposes no record here
    ):
        args += ["--set", setting]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    run = RunDir(out)
    logits = [load_npy(run.logits(m)) for m in range(4)]
    rmia = miakit.score("rmia", logits, np.zeros(40, int), load_npy(run.keep), signal="softmax",
                        temperature=1, gamma=1)  # fmt: skip
    assert (np.ptp(rmia, axis=1) > 0).all()  # with γ = 2 every score was 0
    for m in range(4):
        logprobs = load_npy(run.token_stat(m, "token_logprobs"))
        assert logprobs.shape == (40, max(map(len, lines)) + 1)
        assert json.loads(run.meta(m).read_text())["tokens"].keys() == set(tokens.TOKEN_STATS)
    for name in attacks:
        scores = load_npy(run.scores(name))
        assert scores.shape == (4, 40) and np.isfinite(scores).all()
    report = (out / "report.html").read_text()
    top = pipeline.verdict(run).top
    sentences = " ".join(pipeline.verdict(run).sentences())
    assert "no defence for language models" in sentences and "accuracy" not in sentences
    assert "Language models: no classes to calibrate" in report
    assert len(top) > 0 and "<th>text</th>" in report and "<b>my pin" not in report
    for row in top.itertuples():
        assert f"<td>{html.escape(lines[row.record])}</td>" in report
    again = CliRunner().invoke(app, args)  # rerunning a finished audit redoes nothing
    assert again.exit_code == 0 and "training" not in again.output.lower().split("verdict")[0]


@pytest.mark.slow
def test_the_ready_text_config_audits_16_gpts_and_finds_leakage(tmp_path):
    path = write_corpus(tmp_path / "corpus.txt", 600)
    out = tmp_path / "run"
    args = ["audit", "--config", str(CONFIG), "--out", str(out), "--set", f"data.path={path}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["attacks"]) >= {
        "lm-loss",
        "zlib",
        "min-k",
        "min-k-plus-plus",
        "lira-offline",
    }
