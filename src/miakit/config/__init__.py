"""The audit configuration: pydantic models, YAML loading and `--set a.b=c` overrides.

Every model forbids unknown keys, so a typo stops the run with the key path instead of being ignored.
The defaults are the embedded audit: 64 MLPs on scikit-learn's digits, leave-one-out over all 64.
The schema layer is the bottom of miakit: it imports only `errors`, `store` (hashing) and
`architectures` (the revisions table), never torch, so any command can load and check a config.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from miakit.architectures import (
    REVISIONS,
    STACKED_TRAINER_REVISION,
    TEXT_ARCHITECTURES,
    check_arch_name,
    is_hf,
    is_in_memory,
    is_sklearn,
    is_user_module,
    user_module_file,
)
from miakit.config.defences import DefenceConfig
from miakit.config.yaml_text import read_yaml
from miakit.errors import MiakitError
from miakit.output_restriction import parse_output
from miakit.store import content_hash, file_hash, path_fingerprint


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Section):
    name: str = Field(default="digits", description="a registered data set, or 'user'")
    data_dir: Path | None = Field(
        default=None, description="where data files live; default: $MIAKIT_DATA or a user cache"
    )
    path: Path | None = Field(
        default=None, description="name 'user': an .npz (x, y[, x_test, y_test]) or class folders"
    )
    subsample: int | None = Field(default=None, ge=2, description="keep this many pool records")
    subsample_seed: int | None = Field(default=None, ge=0, description="default: the run seed")
    download: bool = Field(default=True, description="fetch missing official files")


class SplitConfig(Section):
    strategy: Literal["balanced", "paired", "class_balanced_target", "disjoint", "single_point"] = (
        "balanced"
    )
    num_models: int = Field(default=64, ge=2, description="M: target and reference models in all")
    num_targets: int | None = Field(
        default=None, ge=1, description="class_balanced_target, disjoint: targets (default 1)"
    )
    target_fraction: float | None = Field(
        default=None, gt=0, lt=1, description="disjoint: the pool's share for the targets"
    )
    records: list[int] | None = Field(
        default=None, description="single_point: the records the model pairs differ by"
    )


#: ModelConfig's options of arch gpt alone (`miakit.models.gpt`)
GPT_OPTIONS = ("layers", "width", "heads", "context")


class LoraConfig(Section):
    """LoRA adapters (Hu et al. 2022) through peft's LoraConfig: rank r, scale alpha / r, on the
    modules named (their names' last parts, e.g. query, value; c_attn for GPT-2)."""

    r: int = Field(default=8, ge=1, le=256)
    alpha: float = Field(default=16.0, gt=0)
    target_modules: list[str] = Field(min_length=1)


class ModelConfig(Section):
    arch: str = Field(
        default="mlp",
        description="a built-in network (`miakit models list`), 'sklearn' (with estimator and "
        "params), or python:package.module:factory, your factory(input_shape, num_classes) "
        "returning a torch.nn.Module",
    )
    hidden: list[int] = Field(default_factory=lambda: [256])
    activation: Literal["relu", "tanh"] = "relu"
    dropout: float = Field(
        default=0.0, ge=0, lt=1, description="dropout rate where the architecture has dropout"
    )
    layers: int = Field(default=2, ge=1, le=12, description="arch gpt: transformer blocks")
    width: int = Field(default=64, ge=8, description="arch gpt: embedding width")
    heads: int = Field(default=4, ge=1, description="arch gpt: attention heads (divide width)")
    context: int | None = Field(
        default=None,
        ge=2,
        description="arch gpt: tokens the model takes at once (learnt positions); default the "
        "pool's record length L; more leaves room for a ReCaLL prefix (query.recall_prefix)",
    )
    estimator: str | None = Field(
        default=None,
        description="arch 'sklearn': the estimator class's import path, one whose saved files "
        "miakit can load (estimators.FITTED_PARTS), e.g. "
        "sklearn.ensemble.RandomForestClassifier",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="arch 'sklearn': the estimator's constructor arguments (random_state is set "
        "from each model's seed)",
    )
    standardize: bool = Field(
        default=False,
        description="arch 'sklearn': standardize features with each model's own training "
        "records (a StandardScaler before the estimator)",
    )
    task: Literal["sequence-classification", "image-classification", "causal-lm"] | None = Field(
        default=None,
        description="arch hf:<folder or hub id>: what the transformers model is fine-tuned for "
        "(image-classification on an image pool, the others on text records)",
    )
    lora: LoraConfig | None = Field(
        default=None,
        description="arch hf: fine-tune LoRA adapters (peft) instead of every weight",
    )
    target_weights: Path | None = Field(
        default=None,
        description="a target trained elsewhere: its safetensors checkpoint, for a model built "
        "by arch; it becomes model 0, the only target, and the others are references",
    )
    target_members: Path | None = Field(
        default=None,
        description="with target_weights: .npy of the pool indices the target was trained on "
        "(int) or its keep row (bool [N])",
    )

    @field_validator("arch")
    @classmethod
    def _known_form(cls, arch: str) -> str:
        return check_arch_name(arch)

    @field_validator("hidden")
    @classmethod
    def _positive_widths(cls, widths: list[int]) -> list[int]:
        if any(w < 1 for w in widths):
            raise ValueError("every hidden width must be a positive integer")
        return widths

    @model_validator(mode="after")
    def _settings_of_the_form(self) -> ModelConfig:
        sklearn = is_sklearn(self.arch)
        if sklearn and self.estimator is None:
            raise ValueError(
                "arch 'sklearn' needs estimator (e.g. sklearn.linear_model.LogisticRegression)"
            )
        if not sklearn and (self.estimator is not None or self.params or self.standardize):
            raise ValueError("estimator, params, standardize: only with arch 'sklearn'")
        if self.dropout and (sklearn or is_user_module(self.arch) or is_in_memory(self.arch)):
            raise ValueError(f"dropout: not with arch {self.arch!r} (set it in your model)")
        hf = is_hf(self.arch)
        if hf and self.task is None:
            raise ValueError(
                f"arch {self.arch!r} needs task: sequence-classification, image-classification "
                "or causal-lm"
            )
        if not hf and (self.task is not None or self.lora is not None):
            raise ValueError("task, lora: only with arch hf:<folder or hub id>")
        if hf and self.dropout:
            raise ValueError("dropout: not with an hf arch (its config.json sets it)")
        if (self.target_weights is None) != (self.target_members is None):
            raise ValueError("target_weights and target_members: give both, or neither")
        if self.target_weights is not None and sklearn:
            raise ValueError(
                "target_weights: a safetensors checkpoint of a torch model; not with arch 'sklearn'"
            )
        return self

    def hash_inputs(self) -> dict[str, Any]:
        """What a model's weights depend on: the settings of its form of arch and the code they
        run (a built-in network's revision; an estimator's library version; the source file of
        a user's module). Where the target's checkpoint lives is no part of it (plan hashes the
        file's content into the target's train hash)."""
        if is_sklearn(self.arch):
            library = (self.estimator or "").split(".")[0]
            return {
                "arch": self.arch,
                "estimator": self.estimator,
                "params": self.params,
                "standardize": self.standardize,
                "library": library_version(library),
            }
        if is_user_module(self.arch):
            return {"arch": self.arch, "source": file_hash(user_module_file(self.arch))}
        if is_hf(self.arch):
            from miakit.hf import base_identity, model_folder

            lora = None if self.lora is None else self.lora.model_dump(mode="json")
            base = base_identity(model_folder(self.arch, self.task))
            return {"arch": self.arch, "task": self.task, "lora": lora, "base": base}
        if is_in_memory(self.arch):
            return {"arch": self.arch}  # the hash of the factory's code is part of its name
        # the GPT's options only for arch gpt, so that other models' hashes stay as they were
        gpt = set() if self.arch in TEXT_ARCHITECTURES else set(GPT_OPTIONS)
        if self.context is None:  # so that the hashes of GPTs without it stay as they were
            gpt.add("context")
        base = self.model_dump(
            mode="json",
            exclude={"estimator", "params", "standardize", "target_weights", "target_members"}
            | {"task", "lora"}
            | gpt,
        )
        return base | {"revision": REVISIONS.get(self.arch, 0)}


def library_version(package: str) -> str | None:
    """The installed version of `package`'s distribution (scikit-learn for sklearn), or None."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version({"sklearn": "scikit-learn"}.get(package, package))
    except PackageNotFoundError:
        return None


class AugmentConfig(Section):
    """Training-time augmentation of image batches on the training device (all off by default)."""

    flip: bool | Literal["alternate"] = Field(
        default=False,
        description="horizontal flip: true, random per image and batch; alternate, each image "
        "in a random orientation in even epochs and mirrored in odd ones (the speed records')",
    )
    crop_padding: int = Field(default=0, ge=0, description="random crop after reflect padding")
    rotation: float = Field(default=0.0, ge=0, le=180, description="max rotation in degrees")
    color_jitter: float = Field(
        default=0.0, ge=0, lt=1, description="max relative change of brightness/contrast/saturation"
    )
    cutout: int = Field(default=0, ge=0, description="side of the square cut out (0: off)")
    cutmix: float = Field(default=0.0, ge=0, le=1, description="probability of CutMix per batch")


class TrainConfig(Section):
    optimizer: Literal["sgd", "adam"] = "adam"
    lr: float = Field(default=1e-3, gt=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(default=0.0, ge=0)
    weight_decay_on: Literal["all", "weights"] = Field(
        default="all",
        description="all parameters (torch.optim), or conv and linear weights only (the LiRA "
        "code's objax loss decays the `.w` variables: no biases, no BatchNorm)",
    )
    norm_bias_lr_scale: float = Field(
        default=1.0,
        gt=0,
        description="lr multiplier for the biases (shifts) of normalization layers, their weight "
        "decay per step unchanged (the fast-net recipe: 64)",
    )
    lookahead: bool = Field(
        default=False,
        description="every 5 steps pull the weights to slow weights with the speed records' "
        "schedule (0.95^5 · t³), and end on the slow weights",
    )
    epochs: int = Field(default=60, ge=1)
    batch_size: int = Field(default=64, ge=1)
    schedule: Literal["constant", "cosine", "cosine-epoch", "lira-cosine", "onecycle", "step"] = (
        Field(
            default="constant",
            description="lr shape over training; cosine-epoch: cosine stepped once an epoch; "
            "lira-cosine: the LiRA code's cos(7πt/16) with its 1% warm-up; onecycle: linear "
            "decay to 0 after the warm-up",
        )
    )
    warmup_epochs: float = Field(default=0.0, ge=0, description="linear lr warm-up")
    warmup_from: float = Field(
        default=0.0,
        ge=0,
        lt=1,
        description="the lr factor the warm-up starts from (the fast-net recipe: 0.2)",
    )
    milestones: list[int] = Field(
        default_factory=list, description="step schedule: epochs at which lr is multiplied by gamma"
    )
    gamma: float = Field(default=0.1, gt=0, le=1)
    label_smoothing: float = Field(default=0.0, ge=0, lt=1)
    early_stopping_patience: int | None = Field(
        default=None, ge=1, description="stop after this many epochs without a better test accuracy"
    )
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    record_trace: bool = Field(
        default=False, description="store every pool record's loss per epoch (trace.npy)"
    )
    trace_every: int = Field(
        default=1,
        ge=1,
        description="with record_trace: a row every this many epochs (and the last)",
    )
    batched: bool = Field(
        default=False, description="train the models of a task together, stacked (MLP, cnn)"
    )
    bf16: bool = Field(default=True, description="bf16 autocast on CUDA (ignored on CPU)")
    channels_last: bool = Field(default=True, description="channels_last on CUDA (ignored on CPU)")
    compile: bool = Field(default=False, description="torch.compile the model")
    device: Literal["auto", "cpu", "cuda"] = "auto"


class QueryConfig(Section):
    augmentations: Literal[1, 2, 18, 50] = Field(
        default=1,
        description="A: 1 the record as it is; 2 + flip; 18, 50 flip x shifts of up to 1, 2 px",
    )
    batchnorm: Literal["eval", "train"] = Field(
        default="eval", description="train: batch statistics, as the LiRA reference inference"
    )
    output: str = Field(
        default="logits",
        description="what the deployed model's API returns, and so what every attack sees: "
        "logits, probabilities (float32), rounded:d (probabilities to d decimals), top-k:k "
        "(the k largest probabilities) or label (the predicted class); see "
        "miakit.output_restriction. Changing it re-runs the attacks, not training or queries",
    )

    recall_prefix: Path | None = Field(
        default=None,
        description="text records (model.arch gpt): a .txt, .jsonl or .csv file of texts no "
        "model trained on, laid before each record for ReCaLL's conditional log-likelihood "
        "(attack recall); its tokens and the record's must fit in the model's context "
        "(model.context)",
    )
    recall_shots: int | None = Field(
        default=None,
        ge=1,
        description="with recall_prefix: how many of the file's first texts make the prefix "
        "(default: all)",
    )

    @model_validator(mode="after")
    def _shots_with_a_prefix(self) -> QueryConfig:
        if self.recall_shots is not None and self.recall_prefix is None:
            raise ValueError("recall_shots: only with recall_prefix")
        return self

    @field_validator("output")
    @classmethod
    def _known_output(cls, spec: str) -> str:
        try:
            parse_output(spec)
        except MiakitError as exc:
            raise ValueError(str(exc).removeprefix("query.output: ")) from exc
        return spec


class OODConfig(Section):
    """One out-of-distribution set whose records every model is queried on, to measure how often
    attacks call records no model trained on "member" (kinds: see miakit.data.ood)."""

    kind: Literal["dataset", "permuted", "scaled", "noise"]
    source: str | None = Field(default=None, description="kind 'dataset': the data set's name")
    count: int = Field(default=1000, ge=1, description="records in the set")
    factor: float = Field(default=0.5, ge=0, description="kind 'scaled': intensity factor")

    @model_validator(mode="after")
    def _source_for_datasets(self) -> OODConfig:
        if (self.kind == "dataset") != (self.source is not None):
            raise ValueError("source: give it for kind 'dataset', and only then")
        return self

    @property
    def label(self) -> str:
        """Its name in metrics and file names, e.g. `noise` or `dataset-fashion-mnist`."""
        if self.kind == "dataset":
            return f"dataset-{self.source}"
        return f"scaled-{self.factor:g}" if self.kind == "scaled" else self.kind


#: execution.threads may be at most this many per core of the machine.
MAX_THREADS_PER_CORE = 4


def _distinct(values: list[Any]) -> list[Any]:
    """`values` when each is given once; else ValueError naming the repeated one."""
    repeated = [v for i, v in enumerate(values) if v in values[:i]]
    if repeated:
        raise ValueError(f"{repeated[0]!r} is given twice: give each once")
    return values


class EvaluateConfig(Section):
    targets: int | None = Field(
        default=None, ge=1, description="T: the first T models are targets in turn; default all M"
    )
    fprs: list[float] = Field(default_factory=lambda: [0.01, 0.001, 0.0001, 0.00001])
    include_canaries: bool = Field(
        default=False,
        description="score the DP audit's canaries (dp_audit.canaries) in the membership "
        "metrics too; by default they are left out (they stay in audit.json)",
    )
    ood: list[OODConfig] = Field(
        default_factory=list,
        description="out-of-distribution sets for the false-positive study (none by default)",
    )

    @field_validator("ood")
    @classmethod
    def _distinct_ood_sets(cls, sets: list[OODConfig]) -> list[OODConfig]:
        labels = [s.label for s in sets]
        if len(set(labels)) != len(labels):
            raise ValueError(f"ood: two sets of the same kind and source: {labels}")
        return sets

    @field_validator("fprs")
    @classmethod
    def _fprs_in_unit_interval(cls, fprs: list[float]) -> list[float]:
        if not fprs or any(not 0 < x < 1 for x in fprs):
            raise ValueError("fprs must be a non-empty list of numbers strictly between 0 and 1")
        return _distinct(fprs)


class ExecutionConfig(Section):
    """Where models train; none of this changes a model, so none of it is in a content hash."""

    executor: Literal["local", "processes", "ray"] = "local"
    workers: int = Field(default=2, ge=1, description="worker processes (executor: processes)")
    threads_per_worker: int = Field(
        default=1, ge=1, description="torch threads of each worker process (executor: processes)"
    )
    threads: int | None = Field(
        default=None,
        ge=1,
        description="torch CPU threads while a model trains or is queried; default: 1 for "
        "models under 1M parameters (more only slow them, most when other processes share the "
        "cores), else the process's count",
    )
    models_per_task: int = Field(default=1, ge=1, description="models trained by one task")
    ray_address: str | None = Field(
        default=None, description="ray.init address, e.g. 'auto'; default: start a local Ray"
    )
    cpus_per_task: float = Field(default=1, gt=0)
    gpus_per_task: float = Field(default=0, ge=0, description="fractions pack models on a GPU")
    retries: int = Field(default=1, ge=0, description="retries of a task whose worker died")

    @field_validator("threads")
    @classmethod
    def _threads_within_the_machine(cls, threads: int | None) -> int | None:
        most = MAX_THREADS_PER_CORE * (os.cpu_count() or 1)
        if threads is not None and threads > most:
            raise ValueError(
                f"{threads} threads on a machine of {os.cpu_count()} cores: at most {most} "
                f"({MAX_THREADS_PER_CORE} per core; more only slow training and can exhaust "
                "memory)"
            )
        return threads

    allow_code: bool = Field(
        default=False,
        exclude=True,  # never in run.yaml: a resumed or received run needs the opt-in again
        description="run code the config names (model.arch python:...); only from outside a "
        "config file: --allow-code, --set execution.allow_code=true or MIAKIT_ALLOW_CODE=1",
    )


DEFAULT_ATTACKS = [
    "loss",
    "lira-online",
    "lira-online-fixed",
    "lira-offline",
    "lira-offline-fixed",
    "rmia",
    "attack-r",
]


#: the most digits a secret canary may have: |R| = 10^12, exposure up to log2 10^12 ≈ 40 bits.
#: Spaces that large are never enumerated; exposure is extrapolated from a skew-normal fitted to
#: sampled alternatives (miakit.evaluate.exposure), and past ~40 bits the figure would be the
#: fitted tail's alone, 2^27 times beyond what 10^4 samples observe, rather than a measurement.
MAX_SECRET_DIGITS = 12
#: the fewest and most alternatives a query may score to fit the skew-normal: fewer than 100 leave
#: its three parameters (shape, location, scale) to chance; past 10^5 the query's token ids of
#: them (int64 [k, L], held at once) grow to gigabytes while the estimate's error is by then the
#: skew-normal shape's misfit more than the sample's (miakit.evaluate.exposure)
MIN_SECRET_SAMPLES = 100
MAX_SECRET_SAMPLES = 10**5


class CanaryConfig(Section):
    """Pool records made canaries for a DP audit (miakit.data.canaries)."""

    count: int = Field(
        default=0,
        ge=0,
        description="m: pool records made canaries, each in every model's training set "
        "independently with probability 1/2 (0: no canaries)",
    )
    kind: Literal["mislabelled", "natural", "noise", "secret"] = Field(
        default="mislabelled",
        description="mislabelled (random wrong label), natural (unchanged), noise (random "
        "input), secret (text records: secret_format with a random number of secret_digits "
        "digits, whose exposure the DP audit measures)",
    )
    secret_format: str = Field(
        default="the secret number is {}",
        description="kind secret: the canary's text, {} standing for its secret",
    )
    secret_digits: int = Field(
        default=4,
        ge=1,
        description=f"kind secret: digits of the secret, so |R| = 10^d secrets; at most "
        f"{MAX_SECRET_DIGITS}. Exposure is exact (each canary ranked among every alternative) "
        "where the 10^d − count alternatives are at most secret_samples, else estimated from "
        "a skew-normal fitted to secret_samples of them (the Secret Sharer's extrapolation)",
    )
    secret_samples: int = Field(
        default=10_000,
        ge=MIN_SECRET_SAMPLES,
        le=MAX_SECRET_SAMPLES,
        description="kind secret: alternatives each model scores, drawn from the run's seed "
        "among the secrets no canary holds, when R holds more; the skew-normal fitted to their "
        "log-perplexities gives exposure",
    )

    @field_validator("secret_format")
    @classmethod
    def _one_placeholder(cls, text: str) -> str:
        if text.count("{}") != 1 or text.replace("{}", "").count("{") + text.count("}") != 1:
            raise ValueError("must hold {} once, where the secret goes, and no other braces")
        return text

    @field_validator("secret_digits")
    @classmethod
    def _within_extrapolation(cls, digits: int) -> int:
        if digits > MAX_SECRET_DIGITS:
            raise ValueError(
                f"at most {MAX_SECRET_DIGITS} (|R| ≤ 10^{MAX_SECRET_DIGITS}, exposure ≤ "
                f"{MAX_SECRET_DIGITS * math.log2(10):.1f} bits): past that, exposure would be "
                "the fitted skew-normal's tail far beyond any sample of alternatives"
            )
        return digits


class DPAuditConfig(Section):
    """Empirical ε lower bounds (`miakit audit-dp`; miakit.evaluate.dp_audit)."""

    canaries: CanaryConfig = Field(default_factory=CanaryConfig)
    attacks: list[str] | None = Field(
        default=None, description="attacks whose scores are audited (default: every attack)"
    )
    beta: float = Field(default=0.05, gt=0, lt=1, description="1 − confidence of each bound")
    delta: float | None = Field(
        default=None, ge=0, lt=1, description="δ of the bounds (default: defences.dp.delta)"
    )


class AuditConfig(Section):
    seed: int = Field(default=0, ge=0)
    data: DataConfig = Field(default_factory=DataConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    query: QueryConfig = Field(default_factory=QueryConfig)
    attacks: list[str] = Field(default_factory=lambda: list(DEFAULT_ATTACKS), min_length=1)
    attack_options: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-attack settings, e.g. {lira-online: {center: mean}}"
    )
    defences: DefenceConfig = Field(default_factory=DefenceConfig)
    evaluate: EvaluateConfig = Field(default_factory=EvaluateConfig)
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    dp_audit: DPAuditConfig = Field(default_factory=DPAuditConfig)

    @field_validator("attacks")
    @classmethod
    def _attacks_once(cls, attacks: list[str]) -> list[str]:
        return _distinct(attacks)

    def training_inputs(self) -> dict[str, Any]:
        """The settings that change a trained model; a model's content hash is built from these."""
        return {
            "seed": self.seed,
            # where the files live does not matter: the pool's fingerprint covers their content
            "data": self.data.model_dump(mode="json", exclude={"data_dir", "path", "download"}),
            "model": self.model.hash_inputs(),
            # an estimator trains by its own fit: no train.* setting changes it
            "train": {}
            if is_sklearn(self.model.arch)
            else self.train.model_dump(mode="json", exclude={"device"})
            | ({"stacked_revision": STACKED_TRAINER_REVISION} if self.train.batched else {}),
            "defences": self.defences.model_dump(mode="json", exclude={"transfer"})
            | self._transfer_inputs(),
        }

    def _transfer_inputs(self) -> dict[str, Any]:
        # only with transfer on, so that the content hashes of other runs stay as they were
        transfer = self.defences.transfer
        if not transfer.enabled:
            return {}
        inputs = transfer.hash_inputs()
        if transfer.weights is None and transfer.pretrain_data == "rest" and self.data.path:
            # the pool's fingerprint covers the pool only: the rest, which the extractor learns
            # from, is covered by the user file's (or folder's) content
            inputs["rest_content"] = path_fingerprint(Path(self.data.path))
        return {"transfer": inputs}

    def hash(self) -> str:
        return content_hash(self.model_dump(mode="json"))


class SinglePointTargets(Section):
    """Which records to test; the three ways combine (union, in this order)."""

    indices: list[int] = Field(default_factory=list, description="pool indices to test")
    random: int = Field(default=0, ge=0, description="this many random pool records")
    from_run: Path | None = Field(
        default=None, description="an earlier run whose scores/lt-iqr.npy ranks records"
    )
    top_k: int = Field(default=0, ge=0, description="the k most LT-IQR-vulnerable of from_run")


class SinglePointConfig(Section):
    """The with/without experiment: is this one record exposed? (`miakit single-point`)."""

    seed: int = Field(default=0, ge=0)
    data: DataConfig = Field(default_factory=DataConfig)
    num_classes: int | None = Field(
        default=None, ge=2, description="if given, checked against the data set"
    )
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    target_index: int | None = Field(default=None, ge=0, description="one record to test")
    targets: SinglePointTargets = Field(default_factory=SinglePointTargets)
    n_iterations: int = Field(default=32, ge=2, description="rounds: with/without model pairs")
    subset_size: int = Field(default=500, ge=1, description="training records per model, x aside")
    eval_pairs: int = Field(default=8, ge=1, description="fresh pairs for the error rate")
    alpha: float = Field(default=0.05, gt=0, lt=1, description="false-positive rate of the test")
    gaussian_fit: Literal["logit", "loss"] = Field(
        default="logit",
        description="scale of the Gaussian threshold: logit-scaled confidence φ (mapped back to a "
        "loss) or the raw losses, as the single-point study fits them",
    )
    save_plots: bool = True

    def target_list(self) -> list[int]:
        explicit = [self.target_index] if self.target_index is not None else []
        return list(dict.fromkeys([*explicit, *self.targets.indices]))


def format_validation_error(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        path = ".".join(str(part) for part in err["loc"])
        got = err.get("input")
        shown = "" if err["type"] == "missing" or isinstance(got, dict) else f" (got {got!r})"
        reason = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        lines.append(f"  {path or '<root>'}: {reason}{shown}")
    return "invalid configuration:\n" + "\n".join(lines)


def apply_override(raw: dict[str, Any], assignment: str) -> None:
    """Apply one `a.b=c` override in place; the value is parsed as YAML (numbers, lists, booleans)."""
    key, sep, value = assignment.partition("=")
    if not sep or not key.strip():
        raise MiakitError(f"--set expects KEY.PATH=VALUE, got {assignment!r}")
    parts = key.strip().split(".")
    node = raw
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise MiakitError(f"--set {key}: {'.'.join(parts[: i + 1])} is not a section")
        node = child
    node[parts[-1]] = read_yaml(value, f"--set {key}: value {value!r}")


def load_config(
    path: Path | None = None,
    overrides: list[str] | None = None,
    schema: type[BaseModel] = AuditConfig,
) -> Any:
    """Read YAML (or start from the defaults), apply overrides, validate against `schema` (the
    audit's by default); errors name the key path."""
    raw: dict[str, Any] = {}
    if path is not None:
        if not Path(path).is_file():
            raise MiakitError(f"config file {path} does not exist")
        loaded = read_yaml(Path(path).read_bytes(), f"config file {path}")
        if loaded is not None and not isinstance(loaded, dict):
            raise MiakitError(
                f"config file {path} must hold a mapping of settings at its top level"
            )
        raw = loaded or {}
        _refuse_opt_in(raw, f"config file {path}")
    for assignment in overrides or []:
        apply_override(raw, assignment)
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        raise MiakitError(format_validation_error(exc)) from exc


def _refuse_opt_in(raw: dict[str, Any], source: str) -> None:
    """A file may not allow the code it names to run: execution.allow_code in it is an error."""
    execution = raw.get("execution")
    if isinstance(execution, dict) and "allow_code" in execution:
        raise MiakitError(
            f"{source}: execution.allow_code cannot be set in a file (a received config or run "
            "must not allow its own code to run); remove it and give --allow-code, --set "
            "execution.allow_code=true or MIAKIT_ALLOW_CODE=1 instead"
        )


def dump_config(config: AuditConfig) -> str:
    body = config.model_dump(mode="json")
    return yaml.safe_dump({"config_hash": config.hash(), **body}, sort_keys=False)


def read_run_config(path: Path) -> AuditConfig:
    """The resolved config a run was planned with (run.yaml, minus its hash line)."""
    try:
        text = path.read_bytes()
    except OSError as exc:
        raise MiakitError(f"cannot read {path}: {exc}") from exc
    raw = read_yaml(text, str(path)) or {}
    if not isinstance(raw, dict):
        raise MiakitError(f"{path} must hold a mapping of settings at its top level")
    raw.pop("config_hash", None)
    _refuse_opt_in(raw, str(path))
    try:
        return AuditConfig.model_validate(raw)
    except ValidationError as exc:
        raise MiakitError(f"{path}: " + format_validation_error(exc)) from exc
