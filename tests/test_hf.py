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
from miakit.config import load_config, read_run_config
from miakit.data.text import HF_PAD
from miakit.errors import MiakitError
from miakit.models import build_model
from miakit.plan import configured_canaries, load_configured_pool
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
    encoded = tok([r["text"] for r in rows])["input_ids"]
    assert pool.pad_id == HF_PAD and not pool.is_text
    assert pool.x.shape == (len(rows), max(map(len, encoded)))
    for row, ids in zip(pool.x, encoded, strict=True):
        assert row[: len(ids)].tolist() == ids and (row[len(ids) :] == -1).all()
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


def _without_pad_token(folder: Path, copy: Path) -> Path:
    """A copy of the folder whose tokenizer has an EOS token but no pad token (as GPT-2's)."""
    shutil.copytree(folder, copy)
    settings = json.loads((copy / "tokenizer_config.json").read_text())
    del settings["pad_token"]
    settings["eos_token"] = "[EOS]"
    (copy / "tokenizer_config.json").write_text(json.dumps(settings))
    return copy


def _saved_dataset(corpus: Path, folder: Path) -> Path:
    import datasets

    rows = [json.loads(line) for line in corpus.read_text().splitlines()]
    datasets.Dataset.from_list(rows).save_to_disk(str(folder))
    return folder


@pytest.mark.attack("lm-ratio")
@pytest.mark.parametrize("variant", ["pad token, jsonl", "EOS as pad, saved dataset"])
def test_an_hf_causal_lm_audit_stores_the_token_logprobs_of_plain_transformers(
    tiny_lm, tmp_path, variant
):
    folder, corpus = tiny_lm
    data = corpus
    if variant.startswith("EOS"):
        folder = _without_pad_token(folder, tmp_path / "no-pad")
        data = _saved_dataset(corpus, tmp_path / "saved")
    out = tmp_path / "run"
    args = ["audit", "--config", str(ROOT / "configs" / "text_lm.yaml"), "--out", str(out)]
    for setting in (
        f"model.arch=hf:{folder}",
        "model.task=causal-lm",
        f"data.path={data}",
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
    assert (tok.pad_token_id is None) == variant.startswith("EOS")
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
    config = read_run_config(run.run_yaml)
    record = json.loads((run.scores_dir / "lm-ratio.json").read_text())
    assert "reference_lm/token_logprobs.npy" in record["inputs"]["files"]
    assert pipeline.attack(run, config) == []
    np.save(run.reference_lm, np.zeros_like(load_npy(run.reference_lm)))  # changed: redone
    assert pipeline.attack(run, config) == ["lm-ratio"]
    np.testing.assert_allclose(load_npy(run.scores("lm-ratio")), ratio, atol=1e-12)


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


def test_records_are_tokenized_once_per_content_of_data_and_tokenizer(tiny, tmp_path, monkeypatch):
    folder, corpus = tiny
    monkeypatch.setenv("MIAKIT_CACHE", str(tmp_path / "cache"))
    data = tmp_path / "c.jsonl"
    shutil.copy(corpus, data)
    config = _config(folder, data)
    first = load_configured_pool(config)
    assert len(list((tmp_path / "cache").iterdir())) == 1

    def no_tokenizer(path):
        raise AssertionError("tokenized again")

    with monkeypatch.context() as patched:  # a later stage, or another process, reads the cache
        patched.setattr(hf, "tokenizer", no_tokenizer)
        again = load_configured_pool(config)
    np.testing.assert_array_equal(again.x, first.x)
    assert again.fingerprint() == first.fingerprint()
    data.write_text(corpus.read_text().replace("a", "b", 1))
    changed = load_configured_pool(config)
    assert changed.fingerprint() != first.fingerprint()
    assert len(list((tmp_path / "cache").iterdir())) == 2


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
        (
            ["dp_audit.canaries.count=4", "dp_audit.canaries.kind=noise"],
            "dp_audit.canaries.kind noise",
        ),
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


@pytest.mark.attack("recall")
def test_recall_on_an_hf_lm_frames_the_prefix_with_its_tokenizer(tiny_lm, tmp_path):
    folder, corpus = tiny_lm
    texts = [json.loads(line)["text"] for line in corpus.read_text().splitlines()]
    prefix = tmp_path / "prefix.txt"
    prefix.write_text("the fog was warm today , note 000001\na pie felt fine today , note 2\n")
    settings = [
        f"model.arch=hf:{folder}",
        "model.task=causal-lm",
        f"data.path={corpus}",
        "split.num_models=4",
        "train.epochs=1",
        "execution.threads=1",
        "attacks=[recall]",
        f"query.recall_prefix={prefix}",
    ]
    config = load_config(ROOT / "configs" / "text_lm.yaml", settings)
    run = RunDir(tmp_path / "run")
    planned = pipeline.plan(config, run)
    pipeline.train(planned, run)
    pipeline.query(planned, run)
    from safetensors.torch import load_file
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(folder)
    framed = [i for t in prefix.read_text().splitlines() for i in tok(t)["input_ids"]]
    assert framed[0] == tok.convert_tokens_to_ids("[BOS]")
    reference = GPT2LMHeadModel.from_pretrained(folder).eval()
    state = load_file(run.weights(2))
    reference.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    stored = load_npy(run.token_stat(2, "token_logprobs_recall"))
    for i, text in enumerate(texts):
        ids = tok(text)["input_ids"]
        with torch.no_grad():
            logits = reference(torch.tensor([framed + ids])).logits[0].double()
        logp = logits[len(framed) : len(framed) + len(ids) - 1].log_softmax(-1)
        expected = logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])]
        np.testing.assert_allclose(stored[i, : len(ids) - 1], expected.numpy(), atol=2e-5)
        assert np.isnan(stored[i, len(ids) - 1 :]).all()
    long = tmp_path / "long.txt"  # 6 texts of 9 to 10 tokens and a record's 10: over 64
    long.write_text("".join(f"{t}\n" for t in texts[:6]).replace("note", "number"))
    config = load_config(
        ROOT / "configs" / "text_lm.yaml", [*settings, f"query.recall_prefix={long}"]
    )
    message = _plan_error(tmp_path / "again", config)
    count = sum(len(tok(t)["input_ids"]) for t in long.read_text().splitlines())
    assert message.startswith(f"query.recall_prefix: its {count} tokens and a record's")
    assert f"context of 64 (hf:{folder}'s position limit); give fewer texts" in message


def test_secret_canaries_in_an_hf_lm_are_tokenized_and_ranked_by_its_tokenizer(tmp_path):
    from miakit.data.canaries import secret_texts
    from miakit.tokens import SECRET_STAT

    rows = tiny_hf_model.write_corpus(tmp_path / "corpus.jsonl", 40)
    fmt = "the secret is {}"
    alternatives = secret_texts(
        fmt, 2, np.arange(100)
    )  # words of the tokenizer's, as a real one's would be
    folder = tmp_path / "tiny-gpt2"
    tiny_hf_model.write_causal_model(folder, [r["text"] for r in rows] + alternatives)
    config = load_config(
        ROOT / "configs" / "text_lm.yaml",
        [
            f"model.arch=hf:{folder}",
            "model.task=causal-lm",
            f"data.path={tmp_path / 'corpus.jsonl'}",
            "split.num_models=12",
            "train.epochs=1",
            "execution.threads=1",
            "attacks=[lm-loss]",
            "dp_audit.canaries.count=4",
            "dp_audit.canaries.kind=secret",
            "dp_audit.canaries.secret_digits=2",
            f"dp_audit.canaries.secret_format={fmt}",
        ],
    )
    run = RunDir(tmp_path / "run")
    pipeline.audit(config, run, log=None)
    audit = json.loads((run.root / "audit.json").read_text())
    canaries, secrets = audit["canary_records"], audit["exposure"]["secrets"]
    from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast.from_pretrained(folder)
    pool = pipeline.load_plan(run).pool
    for record, secret in zip(canaries, secrets, strict=True):
        ids = tok(alternatives[secret])["input_ids"]
        assert pool.texts[record] == alternatives[secret]
        assert (
            pool.x[record, : len(ids)].tolist() == ids and (pool.x[record, len(ids) :] == -1).all()
        )
    target = audit["targets"][0]
    reference = GPT2LMHeadModel.from_pretrained(folder).eval()
    from safetensors.torch import load_file

    state = load_file(run.weights(target))
    reference.load_state_dict({k.removeprefix("model."): v for k, v in state.items()})
    stored = load_npy(run.token_stat(target, SECRET_STAT))
    for r in (0, 7, secrets[0], 99):  # one text at a time, no padding, in bits
        ids = tok(alternatives[r])["input_ids"]
        with torch.no_grad():
            logp = reference(torch.tensor([ids])).logits[0, :-1].double().log_softmax(-1)
        bits = -logp[torch.arange(len(ids) - 1), torch.tensor(ids[1:])].sum().item() / np.log(2)
        assert stored[r] == pytest.approx(bits, rel=1e-5)
    exposure = np.array(audit["exposure"]["per_target"][0])
    assert audit["exposure"]["candidates"] == 100 - 4 + 1
    assert np.isfinite(exposure).all() and (exposure >= 0).all()


def test_mislabelled_canaries_of_an_hf_classifier_flip_their_labels(tiny):
    folder, corpus = tiny
    plain = load_configured_pool(_config(folder, corpus))
    config = _config(folder, corpus, "dp_audit.canaries.count=6")
    pool = load_configured_pool(config)
    canaries = configured_canaries(config, plain.num_records)
    flipped = np.zeros(plain.num_records, dtype=bool)
    flipped[canaries] = True
    assert (pool.y[flipped] != plain.y[flipped]).all()
    assert (pool.y[~flipped] == plain.y[~flipped]).all()
    np.testing.assert_array_equal(pool.x, plain.x)
