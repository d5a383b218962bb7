"""The checks `plan` runs before anything is written or trained: the attacks and their options,
the architecture against the data, the query views against the data kind, the output folder,
the models and records each chosen attack needs under the planned split, and each attack's
options against the classes, references and loss traces it will meet (`Attack.check`).

Each check raises MiakitError naming the setting and how to fix it, so that a bad audit stops in
seconds instead of after every model has trained.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from miakit.architectures import (
    TEXT_ARCHITECTURES,
    is_hf,
    is_in_memory,
    is_sklearn,
    is_user_module,
)
from miakit.attacks import ATTACKS, make_attack
from miakit.attacks.base import Setting
from miakit.config import AuditConfig, TrainConfig
from miakit.data import Pool
from miakit.errors import MiakitError
from miakit.output_restriction import check_output, parse_output

#: `attacks: all` (or `--attacks all`) stands for every registered attack.
ALL = "all"


def resolve_attacks(names: Sequence[str]) -> list[str]:
    """The attack names with `all` expanded to every registered attack (in registry order) but
    those of causal language models (`Attack.needs_tokens`), which are named one by one;
    unknown names are an error listing the known ones."""
    resolved: list[str] = []
    for name in names:
        everything = [n for n, cls in ATTACKS.items() if not cls.needs_tokens]
        for one in everything if name == ALL else [name]:
            if one not in ATTACKS:
                raise MiakitError(
                    f"attacks: unknown attack {one!r}; known attacks: {', '.join(sorted(ATTACKS))}"
                    f" (or `all`; `miakit attacks list` describes them)"
                )
            if one not in resolved:
                resolved.append(one)
    return resolved


def check_attack_options(config: AuditConfig) -> None:
    """Every attack_options entry names a known attack and holds only valid options."""
    for name, options in config.attack_options.items():
        if name not in ATTACKS:
            raise MiakitError(
                f"attack_options.{name}: unknown attack; known attacks: "
                f"{', '.join(sorted(ATTACKS))}"
            )
        make_attack(name, options)


def check_output_dir(root: Path) -> None:
    """The run directory is a folder (or can be made one) that this process may write."""
    if root.exists() and not root.is_dir():
        raise MiakitError(f"{root} exists and is not a directory; give --out a folder")
    existing = root
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise MiakitError(f"cannot create {root}: {existing} is not a directory")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise MiakitError(f"{existing} is not writable; give --out a folder you may write")


def check_model(config: AuditConfig, pool: Pool) -> None:
    """The training device exists, the architecture exists and fits the records (a user's
    module is imported and built; an estimator is built from model.params), query.output fits
    the classes, the trainer the config picks (DP-SGD, batched, plain) supports its options
    (`train.loop.REFUSED`), and query views and training augmentations are asked only of
    images (never of estimators)."""
    check_output(config.query.output, pool.num_classes)
    if is_in_memory(config.model.arch) and config.execution.executor != "local":
        raise MiakitError(
            f"execution.executor: {config.execution.executor} workers cannot run a model factory "
            "given in memory (miakit.audit(model=...)); use execution.executor=local"
        )
    check_text(config, pool)
    check_recall_prefix(config, pool)
    check_hf(config)
    if is_sklearn(config.model.arch):
        check_estimator(config)
        return
    from miakit.models import build_model  # torch: imported only by the stage that plans
    from miakit.train.loop import check_options
    from miakit.train.trainer import resolve_device

    resolve_device(config.train.device)
    options = config.model.model_dump(exclude={"arch"})
    check_model_memory(config, pool, options)
    model = build_model(config.model.arch, pool.x.shape[1:], pool.num_classes, **options)
    step = (
        "private" if config.defences.dp.enabled else "stacked" if config.train.batched else "plain"
    )
    check_options(step, config.train, model)
    if is_user_module(config.model.arch) or is_in_memory(config.model.arch):
        check_module_runs(config.model.arch, model, pool)
    if any(config.train.augment.model_dump().values()) and not pool.is_image:
        raise MiakitError(
            f"train.augment works on images, but {pool.name}'s records are feature vectors; "
            "turn train.augment off"
        )
    if config.query.augmentations > 1 and not pool.is_image:
        raise MiakitError(
            f"query.augmentations: {config.query.augmentations} views (flips and shifts) need "
            f"images, but {pool.name}'s records are feature vectors; use query.augmentations=1"
        )


def check_evaluation_settings(config: AuditConfig, num_records: int) -> None:
    """What evaluate and the DP audit will read exists, checked before any model trains:
    dp_audit.attacks are attacks the run computes, an `evaluate.ood` set of kind `dataset`
    names a known data set, and canaries left out of the membership metrics leave ordinary
    records to measure them on."""
    from miakit.data.registry import DATASETS

    unknown = [a for a in config.dp_audit.attacks or [] if a not in config.attacks]
    if unknown:
        raise MiakitError(
            f"dp_audit.attacks: {', '.join(unknown)} not among the run's attacks "
            f"({', '.join(config.attacks)}); the DP audit reads the scores those attacks write"
        )
    for i, spec in enumerate(config.evaluate.ood):
        if spec.kind == "dataset" and spec.source not in DATASETS:
            raise MiakitError(
                f"evaluate.ood.{i}.source: unknown data set {spec.source!r}; known: "
                f"{', '.join(sorted(DATASETS))}"
            )
    count = config.dp_audit.canaries.count
    if count and not config.evaluate.include_canaries and num_records - count < 2:
        raise MiakitError(
            f"dp_audit.canaries.count: {count:,} canaries of {num_records:,} pool records leave "
            f"{max(num_records - count, 0)} ordinary records for the membership metrics and the "
            "verdict, which leave canaries out; use fewer canaries or evaluate.include_canaries: "
            "true"
        )


def machine_memory() -> int:
    """Bytes of physical memory on this machine."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def _gib(n: float) -> str:
    return f"{n / 2**30:,.1f} GiB"


def check_split_memory(config: AuditConfig, num_records: int) -> None:
    """MiakitError naming split.num_models when drawing the keep matrix (M × N uniform floats,
    8 bytes each) could not fit in this machine's memory, before it is drawn."""
    need = config.split.num_models * num_records * 8
    if need > machine_memory():
        raise MiakitError(
            f"split.num_models: {config.split.num_models:,} models × {num_records:,} records "
            f"need about {_gib(need)} to draw the keep matrix; this machine has "
            f"{_gib(machine_memory())}"
        )


#: Bytes per parameter while a model trains: float32 weights, gradients and two Adam moments.
TRAINING_BYTES_PER_PARAMETER = 16


def check_model_memory(config: AuditConfig, pool: Pool, options: dict) -> None:
    """MiakitError naming the model settings when training one model could not fit in this
    machine's memory (its parameters counted on torch's meta device, which allocates nothing,
    × `TRAINING_BYTES_PER_PARAMETER`), before the model is built. A module that cannot be
    built on the meta device is left to the real build, which reports its own errors."""
    import torch

    from miakit.models import build_model

    try:
        with torch.device("meta"):
            net = build_model(config.model.arch, pool.x.shape[1:], pool.num_classes, **options)
    except Exception:
        return
    count = sum(p.numel() for p in net.parameters())
    need = count * TRAINING_BYTES_PER_PARAMETER
    if need > machine_memory():
        given = config.model.model_dump(exclude_defaults=True, exclude={"arch"})
        settings = ", ".join(f"model.{k}={v}" for k, v in given.items())
        raise MiakitError(
            f"model.arch {config.model.arch}"
            + (f" with {settings}" if settings else "")
            + f": {count:,} parameters need about {_gib(need)} to train (float32 weights, "
            f"gradients and optimizer state); this machine has {_gib(machine_memory())}"
        )


def check_module_runs(arch: str, model, pool: Pool) -> None:
    """One forward and backward pass of the user's module on two pool records, as training
    feeds them: MiakitError naming model.arch and the shapes when it has no trainable
    parameters, fails on the batch, or does not return logits [batch, classes]."""
    import torch

    from miakit.train.inputs import Normalization, model_inputs

    if not any(p.requires_grad for p in model.parameters()):
        raise MiakitError(
            f"model.arch: {arch} has no trainable parameters; training could not change it"
        )
    norm = Normalization(pool.mean, pool.std) if pool.mean is not None else None
    inputs = model_inputs(torch.as_tensor(pool.x[:2]), norm).float()
    shape = list(inputs.shape)
    try:
        out = model(inputs)
    except Exception as exc:
        raise MiakitError(
            f"model.arch: {arch} fails on a batch of records of shape {shape}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    expected = [len(inputs), pool.num_classes]
    got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if got != expected:
        raise MiakitError(
            f"model.arch: {arch} maps a batch of records of shape {shape} to {got}; training "
            f"needs logits of shape {expected} (batch, {pool.num_classes} classes)"
        )
    try:
        out.float().sum().backward()
    except Exception as exc:
        raise MiakitError(
            f"model.arch: {arch}: the backward pass fails: {type(exc).__name__}: {exc}"
        ) from exc


#: The attacks over the logits that apply to a causal LM's sequence signal (the two-class view
#: of its mean token probability, `miakit.query.query_tokens`); besides them, a text pool takes
#: the attacks that read per-token outputs (`Attack.needs_tokens`).
TEXT_SEQUENCE_ATTACKS = (
    "loss",
    "lira-online",
    "lira-online-fixed",
    "lira-offline",
    "lira-offline-fixed",
    "lira-global",
    "rmia",
    "rmia-offline",
)


def check_hf(config: AuditConfig) -> None:
    """An hf arch trains one model at a time without DP-SGD or a transfer extractor (the
    stacked trainer and Opacus do not take transformers models yet), and a text model's canaries
    are no random noise (its records are token ids). MiakitError naming the setting."""
    if not is_hf(config.model.arch):
        return
    refused = {
        "train.batched": config.train.batched,
        "defences.dp": config.defences.dp.enabled,
        "defences.transfer": config.defences.transfer.enabled,
        "dp_audit.canaries.kind noise": config.dp_audit.canaries.count > 0
        and config.dp_audit.canaries.kind == "noise"
        and config.model.task != "image-classification",
    }
    for setting, used in refused.items():
        if used:
            raise MiakitError(
                f"{setting}: not supported with an hf arch yet; leave it at its default"
            )


def is_language_model(config: AuditConfig) -> bool:
    """model.arch is a causal LM: gpt, or an hf arch with task causal-lm."""
    return config.model.arch in TEXT_ARCHITECTURES or config.model.task == "causal-lm"


def check_text(config: AuditConfig, pool: Pool) -> None:
    """Text records go with a causal LM (model.arch gpt) and only with one, and with nothing this
    first text support lacks: no augmentation, loss traces, batched or private training,
    defences, held-out accuracy or restricted outputs; their attacks are the per-token
    ones and TEXT_SEQUENCE_ATTACKS (RMIA with signal softmax at temperature 1, i.e. p̄, and γ 1); attacks
    that read per-token outputs need text records; their canaries (dp_audit.canaries) are secret
    or natural. MiakitError naming the setting."""
    text_arch = is_language_model(config)
    if not pool.is_text:
        if config.query.recall_prefix is not None:
            raise MiakitError(
                f"query.recall_prefix: a ReCaLL prefix is for text records, not {pool.name}'s"
            )
        if text_arch:
            raise MiakitError(
                f"model.arch: {config.model.arch} takes text records (.txt, .jsonl, .csv), "
                f"not {pool.name}'s"
            )
        token_attacks = [n for n in config.attacks if ATTACKS[n].needs_tokens]
        if token_attacks:
            raise MiakitError(
                f"attacks: {token_attacks[0]} reads a language model's per-token outputs; "
                f"{pool.name}'s records are no text"
            )
        return
    if not text_arch:
        raise MiakitError(
            f"model.arch: {pool.name} holds text records, which only a causal language model "
            f"takes (gpt, or an hf arch with task causal-lm), not {config.model.arch}"
        )
    if "lm-ratio" in config.attacks and not is_hf(config.model.arch):
        raise MiakitError(
            "attacks: lm-ratio compares the target with its pretrained base model as the "
            f"reference LM, which only an hf arch has, not {config.model.arch}"
        )
    context = config.model.context
    if context is not None and context < pool.x.shape[1]:
        raise MiakitError(
            f"model.context ({context}) must be at least the records' length in tokens "
            f"({pool.x.shape[1]})"
        )
    train, defences = config.train, config.defences
    refused = {
        "train.augment": any(train.augment.model_dump().values()),
        "query.augmentations": config.query.augmentations > 1,
        "query.output": config.query.output != "logits",
        "train.record_trace": train.record_trace,
        "train.batched": train.batched,
        "train.early_stopping_patience": train.early_stopping_patience is not None,
        "defences": defences.model_dump() != type(defences)().model_dump(),
        "evaluate.ood": bool(config.evaluate.ood),
    }
    for setting, used in refused.items():
        if used:
            raise MiakitError(
                f"{setting}: not supported for text records yet; leave it at its default"
            )
    canaries = config.dp_audit.canaries
    if canaries.count and canaries.kind not in ("natural", "secret"):
        raise MiakitError(
            f"dp_audit.canaries.kind: {canaries.kind} canaries are for labelled records; text "
            "records take secret (a planted secret, with its exposure) or natural canaries"
        )
    for name in config.attacks:
        check_text_attack(name, config.attack_options.get(name))
        if name == "recall" and config.query.recall_prefix is None:
            raise MiakitError(
                "attacks: recall needs query.recall_prefix, a file of texts no model trained on"
            )


def check_text_attack(name: str, options: Mapping[str, Any] | None) -> None:
    """An attack applies to a causal LM's text records: it reads per-token outputs or is one of
    TEXT_SEQUENCE_ATTACKS, RMIA with signal softmax at temperature 1 (p̄) and γ 1 (its
    `options`, attack_options.<name>). MiakitError naming the setting."""
    if not ATTACKS[name].needs_tokens and name not in TEXT_SEQUENCE_ATTACKS:
        raise MiakitError(
            f"attacks: {name} does not apply to a language model's text records; use "
            f"{', '.join(n for n in ATTACKS if ATTACKS[n].needs_tokens)} or "
            f"{', '.join(TEXT_SEQUENCE_ATTACKS)}"
        )
    if name in ("rmia", "rmia-offline"):
        wanted = {"signal": "softmax", "temperature": 1, "gamma": 1}
        if any((options or {}).get(k) != v for k, v in wanted.items()):
            raise MiakitError(
                f"attack_options.{name}: on text records set signal: softmax, "
                "temperature: 1 (the mean token probability p̄) and gamma: 1 (two models' "
                "p̄ of a record differ by far less than the default γ = 2, so no record "
                "would pass it)"
            )


def check_recall_prefix(config: AuditConfig, pool: Pool) -> None:
    """query.recall_prefix (text records): the file holds the texts asked for, none of them a
    pool record (the prefix must be texts no model trained on), and its tokens with a record's
    fit in the model's context (model.context, default the records' length L; for an hf arch,
    its config's position limit). MiakitError naming the setting."""
    from miakit import tokens
    from miakit.data.text import load_prefix

    query, arch = config.query, config.model.arch
    if query.recall_prefix is None:
        return
    folder = None
    if is_hf(arch):
        from miakit import hf

        folder = hf.model_folder(arch, config.model.task)
    texts, prefix = load_prefix(query.recall_prefix, query.recall_shots, folder)
    if pool.texts is not None:
        trained = [t for t in texts if t in set(pool.texts)]
    else:
        records = {tokens.decode(row) for row in pool.x}
        trained = [t for t in texts if t.encode("utf-8") in records]
    if trained:
        raise MiakitError(
            f"query.recall_prefix: {trained[0]!r} is a pool record; the prefix must be texts "
            "no model trained on"
        )
    length = pool.x.shape[1]
    if folder is not None:
        context = hf.position_limit(folder) or len(prefix) + length
        where = f"{arch}'s position limit"
        advice = "give fewer texts (query.recall_shots)"
    else:
        context = config.model.context or length
        where = "model.context"
        advice = (
            f"set model.context to at least {len(prefix) + length} or give fewer texts "
            "(query.recall_shots)"
        )
    if len(prefix) + length > context:
        raise MiakitError(
            f"query.recall_prefix: its {len(prefix)} tokens and a record's {length} do not fit "
            f"in the model's context of {context} ({where}); {advice}"
        )


def check_estimator(config: AuditConfig) -> None:
    """model.arch sklearn: the estimator is allowed and builds from model.params, and nothing
    that needs a torch model is asked of it (one query view, no loss traces, no DP-SGD,
    calibration or transfer)."""
    from miakit.models.sklearn_model import new_estimator

    model = config.model
    new_estimator(model.estimator or "", model.params, model.standardize, seed=0)
    defences = config.defences
    refused = {
        "query.augmentations": config.query.augmentations != 1,
        "train.record_trace": config.train.record_trace,
        "defences.dp": defences.dp.enabled,
        "defences.temperature_scaling": defences.temperature_scaling,
        "defences.laplace": defences.laplace.enabled,
        "defences.transfer": defences.transfer.enabled,
    }
    for key, asked in refused.items():
        if asked:
            raise MiakitError(
                f"{key}: not with model.arch sklearn (an estimator is queried once per record "
                "through predict_proba and trained by its own fit); "
                + ("use query.augmentations=1" if key.startswith("query") else f"turn {key} off")
            )


#: Attacks whose default signal, the Taylor soft-margin, assumes a network's logits: on an
#: estimator's log-probabilities its polynomial rises again below about −3.2 (p ≲ 0.04), so a
#: confident model's signal would fall as p_y → 1. With estimators they use the softmax signal.
TAYLOR_ATTACKS = ("rmia", "rmia-offline")


def estimator_attack_options(config: AuditConfig) -> AuditConfig:
    """The config with `signal: softmax` for the TAYLOR_ATTACKS chosen with arch sklearn where
    attack_options leaves their signal unset (written to run.yaml like every resolved setting);
    an explicit taylor_soft_margin is a MiakitError. Other configs are returned as they are."""
    if not is_sklearn(config.model.arch):
        return config
    options = dict(config.attack_options)
    for name in TAYLOR_ATTACKS:
        if name not in config.attacks:
            continue
        chosen = dict(options.get(name) or {})
        if chosen.get("signal", "softmax") != "softmax":
            raise MiakitError(
                f"attack_options.{name}.signal: the Taylor soft-margin assumes a network's "
                "logits; an estimator gives log-probabilities, on which it is not monotone in "
                "p_y: use signal: softmax (the default with model.arch sklearn)"
            )
        options[name] = chosen | {"signal": "softmax"}
    return config.model_copy(update={"attack_options": options})


def target_members(config: AuditConfig, num_records: int) -> np.ndarray:
    """The keep row, bool [N], of the target trained elsewhere, from model.target_members: an
    .npy of int pool indices (after data.subsample) or of bool [N]. MiakitError naming the
    setting when the file is missing or does not fit the pool."""
    path = Path(config.model.target_members or "")
    if not path.is_file():
        raise MiakitError(f"model.target_members: no file {path}")
    try:
        values = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise MiakitError(f"model.target_members: {path} is no readable .npy ({exc})") from exc
    if values.dtype == bool:
        if values.shape != (num_records,):
            raise MiakitError(
                f"model.target_members: a bool keep row must have shape ({num_records},) (the "
                f"pool's records), got {values.shape}"
            )
        return values.copy()
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer):
        raise MiakitError(
            f"model.target_members: expected int pool indices [k] or a bool keep row [N], got "
            f"{values.dtype} {values.shape}"
        )
    if values.size and (values.min() < 0 or values.max() >= num_records):
        raise MiakitError(
            f"model.target_members: indices must lie in [0, {num_records}) (the pool's records, "
            f"after data.subsample), got [{values.min()}, {values.max()}]"
        )
    if np.unique(values).size != values.size:
        raise MiakitError("model.target_members: an index appears twice")
    row = np.zeros(num_records, dtype=bool)
    row[values] = True
    return row


def check_target_checkpoint(config: AuditConfig, pool: Pool) -> None:
    """model.target_weights: the split gives it references (balanced), it is the only target,
    its members fit the pool, and the checkpoint loads into the model arch builds (every tensor
    present with its shape). MiakitError naming the setting otherwise."""
    model = config.model
    if model.target_weights is None:
        return
    for key, bad in {
        "split.strategy": config.split.strategy != "balanced",
        "evaluate.targets": config.evaluate.targets not in (None, 1),
        "dp_audit.canaries.count": config.dp_audit.canaries.count > 0,
        "defences.transfer": config.defences.transfer.enabled,
    }.items():
        if bad:
            raise MiakitError(
                f"{key}: a target checkpoint (model.target_weights) is audited with "
                "split.strategy balanced, as the only target, without canaries or transfer; "
                f"leave {key} at its default"
            )
    target_members(config, pool.num_records)
    path = Path(model.target_weights)
    if not path.is_file():
        raise MiakitError(f"model.target_weights: no file {path}")
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from miakit.models import build_model

    net = build_model(
        model.arch, pool.x.shape[1:], pool.num_classes, **model.model_dump(exclude={"arch"})
    )
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise MiakitError(f"model.target_weights: {path} is not a safetensors file: {exc}") from exc
    expected = net.state_dict()
    for name, tensor in state.items():
        if name in expected and tensor.dtype != expected[name].dtype:
            # load_state_dict would cast silently (integers into a float model's weights)
            raise MiakitError(
                f"model.target_weights: {path}: tensor {name} is {tensor.dtype}, but the model "
                f"{model.arch} holds {expected[name].dtype} there; save the checkpoint with the "
                "model's own dtypes"
            )
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise MiakitError(
            f"model.target_weights: {path} does not load into the model {model.arch} builds "
            f"for {pool.name}: {exc}"
        ) from exc


def check_output_attacks(config: AuditConfig) -> None:
    """Some chosen attack can read what query.output returns (only label-only attacks, and those
    reading no outputs, run on `label`); else MiakitError naming the attacks that can."""
    if parse_output(config.query.output).scores:
        return
    if all(ATTACKS[name].output_needs == "scores" for name in config.attacks):
        usable = [name for name, cls in ATTACKS.items() if cls.output_needs != "scores"]
        raise MiakitError(
            f"query.output={config.query.output}: none of the attacks {config.attacks} can run "
            f"on the predicted class alone; add one that can ({', '.join(usable)})"
        )


def check_design(
    config: AuditConfig,
    keep: np.ndarray,
    targets: Sequence[int],
    references: Sequence[int] | None,
    eval_records: np.ndarray | None,
    attacks: Sequence[str],
) -> None:
    """Every target has members and non-members among the evaluated records (a ROC needs both),
    and every record each attack scores has the reference models that attack needs: with
    `reference_counts: equal` (LiRA, Attack-R), as many of each side as the target's smaller
    side of references has (`attacks.engine`), so an IN one too for an attack reading OUT alone,
    unless the target is no reference."""
    records = slice(None) if eval_records is None else eval_records
    for t in targets:
        members = keep[t, records]
        if members.all() or not members.any():
            raise MiakitError(
                f"target model {t} is trained on {int(members.sum())} of the "
                f"{members.size} evaluated records: a ROC needs members and non-members; use a "
                "larger pool (data.subsample, data.path) or another split"
            )
    needs = {side for a in attacks for side in ATTACKS[a].reference_needs}
    if not needs:
        return
    num_models = keep.shape[0]
    design = list(references or range(num_models))
    counted = {
        a
        for a in attacks
        if make_attack(a, config.attack_options.get(a)).reference_counts == "equal"
    }
    for t in targets:
        refs = [m for m in design if m != t]
        inside = keep[refs].sum(axis=0)
        counts = {"in": inside, "out": len(refs) - inside, "any": np.full_like(inside, len(refs))}
        smaller = np.minimum(counts["in"], counts["out"])
        for side in sorted(needs):
            who = [a for a in attacks if side in ATTACKS[a].reference_needs]
            equal = {
                a
                for a in who
                if a in counted and (len(ATTACKS[a].reference_needs) == 2 or t in design)
            }
            have = {a: smaller if a in equal else counts[side] for a in who}
            short = [a for a in who if (have[a] <= 0).any()]
            if short:
                lacking = np.flatnonzero(np.any([have[a] <= 0 for a in short], axis=0))
                kind = {"in": "an IN", "out": "an OUT", "any": "a"}[side]
                fewer = (
                    " (with reference_counts: equal, as many of each side as the target's "
                    "smaller side of references has)"
                    if equal & set(short)
                    else ""
                )
                raise MiakitError(
                    f"{', '.join(short)} need{'s' * (len(short) == 1)} {kind} reference model for every record{fewer}, but with "
                    f"split.num_models={num_models} ({config.split.strategy}) target {t} has none "
                    f"for {lacking.size} records (e.g. record {lacking[0]}); use more models"
                )


def trace_points(train: TrainConfig) -> int | None:
    """Rows of each model's planned loss trace: before training, after every trace_every-th epoch
    and after the last (None without traces; early stopping can leave fewer)."""
    if not train.record_trace:
        return None
    from miakit.train.traces import LossTrace  # torch: imported only by the stage that plans

    recorder = LossTrace(train.trace_every, train.epochs)
    return 1 + sum(recorder.due(epoch) for epoch in range(1, train.epochs + 1))


def check_attack_settings(
    config: AuditConfig,
    num_classes: int,
    num_models: int,
    targets: Sequence[int],
    references: Sequence[int] | None,
) -> None:
    """Each chosen attack's options fit the pool's classes, the fewest reference models of any
    target (every other model unless the split names them) and the planned loss traces; the
    attack's own `check` raises MiakitError where they do not."""
    fewest = min(len([m for m in (references or range(num_models)) if m != t]) for t in targets)
    setting = Setting(num_classes, fewest, trace_points(config.train))
    for name in config.attacks:
        make_attack(name, config.attack_options.get(name)).check(setting)
