"""Hugging Face transformers models (model.arch hf:FOLDER): the folder's checks, the pool its
tokenizer makes, the content hash, the fine-tuned classifiers' logits and attacks against plain
transformers computations, and plan's refusals. A tiny BERT and tokenizer are made locally
(`examples/tiny_hf_model.py`); nothing is downloaded."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers", reason="the text extra (miakit[text]) is not installed")

import torch
from typer.testing import CliRunner

from miakit import hf, pipeline
from miakit.cli import app
from miakit.config import load_config
from miakit.errors import MiakitError
from miakit.models import build_model
from miakit.plan import load_configured_pool
from miakit.store import RunDir, load_npy

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "text_classifier.yaml"
sys.path.insert(0, str(ROOT / "examples"))
import tiny_hf_model  # noqa: E402

sys.path.pop(0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model folder, labelled corpus of 60 records)."""
    root = tmp_path_factory.mktemp("hf")
    rows = tiny_hf_model.write_corpus(root / "corpus.jsonl", 60)
    tiny_hf_model.write_model(root / "tiny-bert", [r["text"] for r in rows])
    return root / "tiny-bert", root / "corpus.jsonl"


def _config(folder: Path, corpus: Path, *overrides: str):
    return load_config(
        CONFIG,
        [
            f"model.arch=hf:{folder}",
            f"data.path={corpus}",
            "split.num_models=4",
            "train.epochs=3",
            "execution.threads=1",
            *overrides,
        ],
    )


def test_records_are_tokenized_by_the_model_folders_tokenizer(tiny):
    folder, corpus = tiny
    pool = load_configured_pool(_config(folder, corpus))
    rows = [json.loads(line) for line in corpus.read_text().splitlines()]
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(folder)
    expected = tok([r["text"] for r in rows], padding=True, return_tensors="np")["input_ids"]
    assert pool.pad_id == tok.pad_token_id == 0 and not pool.is_text
    np.testing.assert_array_equal(pool.x, expected)
    assert pool.y.tolist() == [r["label"] for r in rows] and pool.num_classes == 2
    assert pool.tokenizer == hf.tokenizer_hash(folder)


def test_the_base_models_files_and_the_tokenizer_decide_retraining(tiny, tmp_path):
    folder, corpus = tiny
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    config = _config(copy, corpus)
    before, fingerprint = config.training_inputs(), load_configured_pool(config).fingerprint()
    assert before["model"]["base"] == hf.base_identity(copy)
    assert before == _config(copy, corpus).training_inputs()
    lora = _config(copy, corpus, "model.lora={r: 2, alpha: 4, target_modules: [query]}")
    assert lora.training_inputs() != before
    from safetensors.torch import load_file, save_file

    weights = load_file(copy / "model.safetensors")
    first = next(iter(weights))
    weights[first] = weights[first] + 1
    save_file(weights, copy / "model.safetensors", metadata={"format": "pt"})
    assert config.training_inputs() != before  # other base weights: every model retrains
    assert load_configured_pool(config).fingerprint() == fingerprint  # same tokens
    tokenizer = json.loads((copy / "tokenizer.json").read_text())
    tokenizer["model"]["vocab"]["zzz"] = len(tokenizer["model"]["vocab"])
    (copy / "tokenizer.json").write_text(json.dumps(tokenizer))
    assert load_configured_pool(config).fingerprint() != fingerprint


def test_each_model_copies_the_shared_base_and_draws_its_own_head(tiny):
    folder, _ = tiny
    arch = f"hf:{folder}"
    torch.manual_seed(1)
    a = build_model(arch, (8,), 3, task="sequence-classification")
    torch.manual_seed(1)
    b = build_model(arch, (8,), 3, task="sequence-classification")
    torch.manual_seed(2)
    c = build_model(arch, (8,), 3, task="sequence-classification")
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    head = "model.classifier.weight"
    assert sa[head].shape == (3, 32) and torch.equal(sa[head], sb[head])
    assert not torch.equal(sa[head], sc[head])
    body = "model.bert.embeddings.word_embeddings.weight"
    assert torch.equal(sa[body], sc[body]) and sa[body].data_ptr() != sc[body].data_ptr()
    from safetensors.torch import load_file

    stored = load_file(folder / "model.safetensors")
    assert torch.equal(sa[body], stored["embeddings.word_embeddings.weight"])


def _plan_error(tmp_path, config) -> str:
    with pytest.raises(MiakitError) as caught:
        pipeline.plan(config, RunDir(tmp_path / "run"))
    assert not (tmp_path / "run" / "run.yaml").exists()
    return str(caught.value)


def test_plan_refuses_unusable_model_folders(tiny, tmp_path):
    folder, corpus = tiny
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    config = _config(bad, corpus)
    (bad / "model.safetensors").rename(bad / "pytorch_model.bin")
    message = _plan_error(tmp_path, config)
    assert "no .safetensors weights; it has only pytorch_model.bin, pickle files" in message
    (bad / "pytorch_model.bin").rename(bad / "model.safetensors")
    settings = json.loads((bad / "config.json").read_text())
    (bad / "config.json").write_text(json.dumps({**settings, "auto_map": {"AutoModel": "m.M"}}))
    assert "config.json has auto_map" in _plan_error(tmp_path, config)
    (bad / "config.json").write_text(json.dumps(settings))
    (bad / "tokenizer.json").unlink()
    assert "has no tokenizer.json" in _plan_error(tmp_path, config)
    missing = _config(tmp_path / "nowhere", corpus)
    assert _plan_error(tmp_path, missing).startswith("model.arch: hf:")


def test_plan_refuses_records_without_labels_for_a_classifier(tiny, tmp_path):
    folder, corpus = tiny
    lines = corpus.read_text().splitlines()
    unlabelled = tmp_path / "c.jsonl"
    unlabelled.write_text("\n".join([*lines[:5], json.dumps({"text": "no label"})]) + "\n")
    message = _plan_error(tmp_path, _config(folder, unlabelled))
    assert message.startswith("data.path: model.task sequence-classification needs a 'label'")
    assert "1 without one (record 6 first)" in message


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.task=null"], "needs task: sequence-classification, image-classification or"),
        (["model.task=token-classification"], "model.task"),
        (["model.arch=mlp"], "task, lora: only with arch hf:"),
        (["model.lora={r: 2}"], "target_modules"),
    ],
)
def test_the_config_refuses_hf_settings_that_do_not_fit(tiny, overrides, message):
    folder, corpus = tiny
    with pytest.raises(MiakitError, match=message):
        _config(folder, corpus, *overrides)


def test_plan_names_the_text_extra_when_transformers_is_missing(tiny, tmp_path, monkeypatch):
    folder, corpus = tiny
    config = _config(folder, corpus)
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "transformers" else real(name, *a),
    )
    message = _plan_error(tmp_path, config)
    assert "needs transformers" in message and "pip install 'miakit[text]'" in message


def test_a_classifier_audit_runs_and_its_logits_are_the_transformers_models(tiny, tmp_path):
    folder, corpus = tiny
    out = tmp_path / "run"
    args = ["audit", "--config", str(CONFIG), "--out", str(out)]
    for setting in (f"model.arch=hf:{folder}", f"data.path={corpus}", "split.num_models=4"):
        args += ["--set", setting]
    args += ["--set", "train.epochs=3", "--set", "execution.threads=1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    run = RunDir(out)
    rows = [json.loads(line) for line in corpus.read_text().splitlines()]
    from safetensors.torch import load_file
    from transformers import BertForSequenceClassification, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(folder)
    batch = tok([r["text"] for r in rows], padding=True, return_tensors="pt")
    labels = torch.tensor([r["label"] for r in rows])
    reference = BertForSequenceClassification.from_pretrained(folder, num_labels=2).eval()
    for m in range(4):
        state = load_file(run.weights(m))
        reference.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
        with torch.no_grad():
            expected = reference(**batch).logits.double()
        logits = load_npy(run.logits(m))
        assert logits.shape == (60, 1, 2)
        np.testing.assert_allclose(logits[:, 0], expected.numpy(), atol=1e-5)
        if m == 0:
            nll = torch.nn.functional.cross_entropy(expected, labels, reduction="none")
            np.testing.assert_allclose(load_npy(run.scores("loss"))[0], -nll.numpy(), atol=1e-5)
    for name in ("lira-online", "lira-offline", "rmia"):
        assert np.isfinite(load_npy(run.scores(name))).all()
    assert pipeline.trained_models(run) == (4, 4)
    again = CliRunner().invoke(app, args)  # nothing retrains
    assert again.exit_code == 0 and "training" not in again.output.lower().split("verdict")[0]


@pytest.fixture(scope="module")
def tiny_lm(tmp_path_factory):
    """(GPT-2 folder, corpus of 40 records)."""
    root = tmp_path_factory.mktemp("hf-lm")
    rows = tiny_hf_model.write_corpus(root / "corpus.jsonl", 40)
    tiny_hf_model.write_causal_model(root / "tiny-gpt2", [r["text"] for r in rows])
    return root / "tiny-gpt2", root / "corpus.jsonl"


@pytest.mark.attack("lm-ratio")
def test_an_hf_causal_lm_audit_stores_the_token_logprobs_of_plain_transformers(tiny_lm, tmp_path):
    folder, corpus = tiny_lm
    out = tmp_path / "run"
    args = ["audit", "--config", str(ROOT / "configs" / "text_lm.yaml"), "--out", str(out)]
    for setting in (
        f"model.arch=hf:{folder}",
        "model.task=causal-lm",
        f"data.path={corpus}",
        "split.num_models=4",
        "train.epochs=3",
        "execution.threads=1",
        "attacks=[lm-loss, zlib, lowercase, min-k, lm-ratio, lira-online, rmia]",
    ):
        args += ["--set", setting]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    run = RunDir(out)
    texts = [json.loads(line)["text"] for line in corpus.read_text().splitlines()]
    from safetensors.torch import load_file
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(folder)
    reference = GPT2LMHeadModel.from_pretrained(folder).eval()
    state = load_file(run.weights(1))
    reference.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    stored = load_npy(run.token_stat(1, "token_logprobs"))
    lower = load_npy(run.token_stat(1, "token_logprobs_lower"))
    for i, text in enumerate(texts):  # one record at a time, no padding, float64
        for ids, row in (
            (tok(text)["input_ids"], stored[i]),
            (tok(text.lower())["input_ids"], lower[i]),
        ):
            with torch.no_grad():
                logits = reference(torch.tensor([ids])).logits[0].double()
            expected = logits[:-1].log_softmax(-1)[
                torch.arange(len(ids) - 1), torch.tensor(ids[1:])
            ]
            np.testing.assert_allclose(row[: len(ids) - 1], expected.numpy(), atol=2e-5)
            assert np.isnan(row[len(ids) - 1 :]).all()
    zlib_scores = load_npy(run.scores("zlib"))
    import zlib

    sizes = np.array([len(zlib.compress(t.encode(), 9)) for t in texts])
    np.testing.assert_allclose(zlib_scores[1], np.nanmean(stored, axis=1) / sizes, rtol=1e-6)
    base = GPT2LMHeadModel.from_pretrained(folder).eval()  # the reference LM: not fine-tuned
    base_means = []
    for text in texts:
        ids = tok(text)["input_ids"]
        with torch.no_grad():
            logp = base(torch.tensor([ids])).logits[0, :-1].double().log_softmax(-1)
        base_means.append(logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].mean().item())
    ratio = load_npy(run.scores("lm-ratio"))
    np.testing.assert_allclose(ratio[1], np.nanmean(stored, axis=1) - base_means, atol=2e-5)
    for name in ("lm-loss", "lowercase", "min-k", "lira-online", "rmia"):
        assert np.isfinite(load_npy(run.scores(name))).all()
    assert "<th>text</th>" in (out / "report.html").read_text()


def test_plan_refuses_lm_ratio_without_an_hf_base_model(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("".join(f"record number {i}\n" for i in range(20)))
    config = load_config(
        ROOT / "configs" / "text_lm.yaml",
        [f"data.path={corpus}", "attacks=[lm-ratio]", "split.num_models=2"],
    )
    message = _plan_error(tmp_path, config)
    assert message.startswith("attacks: lm-ratio compares the target with its pretrained base")


def test_lora_trains_only_the_adapters_and_the_head(tiny):
    folder, corpus = tiny
    config = _config(folder, corpus, "model.lora={r: 2, alpha: 4, target_modules: [query, value]}")
    torch.manual_seed(0)
    net = build_model(config.model.arch, (8,), 2, **config.model.model_dump(exclude={"arch"}))
    trainable = [n for n, p in net.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "classifier" in n for n in trainable)
    assert any("query.lora_A" in n for n in trainable) and any(
        "value.lora_B" in n for n in trainable
    )
    frozen = {n: p.clone() for n, p in net.named_parameters() if not p.requires_grad}
    x = torch.randint(1, 20, (4, 8))
    loss = torch.nn.functional.cross_entropy(net(x), torch.tensor([0, 1, 0, 1]))
    loss.backward()
    torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=1.0).step()
    assert all(torch.equal(p, frozen[n]) for n, p in net.named_parameters() if n in frozen)
    with pytest.raises(MiakitError, match=r"^model.lora: "):
        build_model(
            config.model.arch,
            (8,),
            2,
            task="sequence-classification",
            lora={"r": 2, "alpha": 4, "target_modules": ["no_such_module"]},
        )


def test_records_are_tokenized_once_per_content_of_data_and_tokenizer(tiny, tmp_path):
    folder, corpus = tiny
    data = tmp_path / "c.jsonl"
    shutil.copy(corpus, data)
    config = _config(folder, data)
    first = load_configured_pool(config)
    assert load_configured_pool(config) is first
    data.write_text(corpus.read_text().replace('"label": 1', '"label": 0', 1))
    changed = load_configured_pool(config)
    assert changed is not first and changed.fingerprint() != first.fingerprint()


def test_a_hub_id_goes_through_the_hub_clients_download(tiny, monkeypatch):
    folder, _ = tiny
    import huggingface_hub

    asked = []

    def snapshot_download(repo_id, **options):
        asked.append((repo_id, options))
        return str(folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    assert hf.model_folder("hf:someone/tiny-bert", "sequence-classification") == folder
    ((repo_id, options),) = asked
    assert repo_id == "someone/tiny-bert" and "*.bin" not in options["allow_patterns"]
    assert all(
        p.endswith((".json", ".safetensors", ".txt", ".model")) for p in options["allow_patterns"]
    )

    def offline(repo_id, **options):
        raise OSError("no network")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(MiakitError, match=r"^model.arch: hf:someone/x is no local folder"):
        hf.model_folder("hf:someone/x", "causal-lm")
    with pytest.raises(MiakitError, match=r"^model.arch: hf:not-here: no folder not-here"):
        hf.model_folder("hf:not-here", "causal-lm")


@pytest.mark.parametrize(
    ("settings", "name"),
    [
        (["train.batched=true"], "train.batched"),
        (["defences.dp.enabled=true", "defences.dp.noise_multiplier=1"], "defences.dp"),
    ],
)
def test_plan_refuses_trainers_that_do_not_take_transformers_models(tiny, tmp_path, settings, name):
    folder, corpus = tiny
    message = _plan_error(tmp_path, _config(folder, corpus, *settings))
    assert message == f"{name}: not supported with an hf arch yet; leave it at its default"


@pytest.mark.slow
def test_the_ready_classifier_config_audits_16_fine_tuned_models_and_finds_leakage(tmp_path):
    rows = tiny_hf_model.write_corpus(tmp_path / "corpus.jsonl", 200)
    tiny_hf_model.write_model(tmp_path / "tiny-bert", [r["text"] for r in rows])
    out = tmp_path / "run"
    args = ["audit", "--config", str(CONFIG), "--out", str(out)]
    args += ["--set", f"model.arch=hf:{tmp_path / 'tiny-bert'}"]
    args += ["--set", f"data.path={tmp_path / 'corpus.jsonl'}"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())["attacks"]
    assert set(metrics) == {"loss", "lira-online", "lira-offline", "rmia"}
    assert metrics["loss"]["auc"]["mean"] > 0.7  # the wrongly labelled records are memorized
    assert (out / "report.html").is_file()
