"""Transfer learning (defences.transfer): a frozen extractor whose outputs every model shares.

The extractor is model.arch's network, loaded from a safetensors file or pretrained by miakit on
records disjoint from the pool. Its frozen part (miakit.models.split, cut at the features or
before the last block) runs once per run over every pool record under each query view, and the
results are stored in RUN/transfer/:

- extractor.safetensors: the whole extractor network (its classifier unused);
- features.npy: float32 [A, N, ...], the frozen part's output for pool record n under view a
  (miakit.query's views, so exactly those the query stage uses);
- test_features.npy: float32 [1, N_test, ...], the same for the test split, unaugmented;
- transfer.json, written last: the content hash of everything the files depend on, and where
  the extractor came from.

Models then train and are queried on these features like any model on feature vectors
(`miakit.features.ExtractorFeatures`): plain, batched, DP-SGD, loss traces and calibration need
no change. `shared_features` builds the files as a step of the train and query stages, before
any model job runs, under a run-level lock (a process that finds them being built waits);
model jobs only load them (`stored_features`) and reuse them while the hash matches.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from miakit.config import AuditConfig, AugmentConfig
from miakit.data import DATASETS, Pool, load_pool
from miakit.data.registry import subsample_indices
from miakit.errors import MiakitError
from miakit.models import build_model
from miakit.models.split import classifier_name, split_model
from miakit.plan import Plan, effective_training_inputs, subsample_seed
from miakit.query import CHUNK, check_views, identity_view, query_logits, views
from miakit.seeding import derive_seed
from miakit.store import (
    RunDir,
    atomic_path,
    clear_leftovers,
    content_hash,
    file_hash,
    file_lock,
    load_npy,
    save_json,
    write_atomic,
)
from miakit.train.inputs import Normalization, model_inputs
from miakit.train.trainer import resolve_device, train_model

#: derive_seed(run seed, "transfer", index) for each random draw of the pretraining
PRETRAIN_SEEDS = {"init": 0, "order": 1, "records": 2}
#: how often a worker looks again while another builds the shared features
POLL_SECONDS = 2.0


@dataclass(frozen=True)
class SharedFeatures:
    """The run's extractor and its stored outputs, as a worker uses them."""

    extractor: nn.Module  # the whole network, frozen, in eval mode
    features: np.ndarray  # float32 [A, N, ...], memory-mapped
    test_features: np.ndarray | None  # float32 [N_test, ...]
    info: dict[str, Any]  # transfer.json

    def identity(self, augmentations: int) -> np.ndarray:
        """The features of the records as they are: what models train on."""
        return np.array(self.features[identity_view(augmentations)])

    def new_trainable(self, config: AuditConfig, num_classes: int) -> nn.Sequential:
        """The trained part: a copy of the extractor's layers after the cut (pretrained weights)
        and a new head, initialized from torch's global generator (the caller seeds it)."""
        transfer = config.defences.transfer
        parts = split_model(self.extractor, transfer.cut)
        body = copy.deepcopy(parts.body).requires_grad_(True).train()
        width = parts.classifier.in_features
        head: list[nn.Module] = (
            [nn.Linear(width, num_classes)]
            if transfer.head == "linear"
            else [
                nn.Linear(width, transfer.head_hidden),
                nn.ReLU(),
                nn.Linear(transfer.head_hidden, num_classes),
            ]
        )
        return nn.Sequential(*body, *head)

    def query(self, model: nn.Module, device: torch.device, batchnorm: str) -> np.ndarray:
        """Logits [N, A, C]: the trained part on each view's features."""
        per_view = [
            query_logits(model, torch.from_numpy(np.array(view)).to(device), batchnorm=batchnorm)
            for view in self.features
        ]
        return np.concatenate(per_view, axis=1)

    @torch.no_grad()
    def query_records(
        self,
        model: nn.Module,
        x: Tensor,
        augmentations: int,
        norm: Normalization | None,
        batchnorm: str,
    ) -> np.ndarray:
        """Logits [K, A, C] of records other than the pool's (the out-of-distribution study):
        the frozen part on each view, as the stored features were made, then the trained part."""
        frozen = split_model(self.extractor, self.info["cut"]).frozen.eval()
        per_view: list[list[Tensor]] = [[] for _ in range(augmentations)]
        for _, a, outputs in _frozen_outputs(frozen, x, augmentations, norm):
            per_view[a].append(outputs)
        return np.concatenate(
            [query_logits(model, torch.cat(v), batchnorm=batchnorm) for v in per_view], axis=1
        )

    def describe(self, config: AuditConfig) -> dict[str, Any]:
        """The model's meta.json entry."""
        transfer = config.defences.transfer
        info = self.info
        return {
            "hash": info["hash"],
            "arch": info["arch"],
            "source": info["source"],
            "feature_shape": info["feature_shape"],
            "head": transfer.head,
            "fine_tune": transfer.fine_tune,
            "shared_seconds": info["seconds"],
        }


def check_config(config: AuditConfig) -> None:
    """Stop on settings that cannot work on precomputed features."""
    off = AugmentConfig().model_dump()
    used = [k for k, v in config.train.augment.model_dump().items() if v != off[k]]
    if used:
        raise MiakitError(
            f"train.augment.{used[0]}: models trained on the shared features of "
            "defences.transfer never see images, so training-time augmentation is impossible; "
            "turn train.augment off (query.augmentations still works)"
        )


def extractor_hash(config: AuditConfig, device: str) -> str:
    """Everything the extractor's weights depend on when pretrained on `device` ("cpu" or
    "cuda"): settings that device ignores count as their defaults (`plan.effective_training_inputs`),
    and the cut does not count (one extractor serves both)."""
    training = effective_training_inputs(config.training_inputs(), device, dp_applies=False)
    settings = training["defences"]["transfer"]
    inputs: dict[str, Any] = {"model": training["model"]}
    if config.defences.transfer.weights is not None:
        inputs["weights_sha256"] = settings["weights_sha256"]
    else:
        pretraining = ("pretrain_data", "pretrain_epochs", "pretrain_records", "rest_content")
        inputs |= {k: settings[k] for k in pretraining if k in settings}
        inputs |= {k: training[k] for k in ("seed", "data", "train")}
    return content_hash(inputs)


def features_hash(plan: Plan) -> str:
    """Everything the stored features depend on."""
    config = plan.config
    return content_hash(
        {
            "extractor": extractor_hash(config, resolve_device(config.train.device).type),
            "cut": config.defences.transfer.cut,
            "pool": plan.fingerprint,
            "augmentations": config.query.augmentations,
        }
    )


def shared_features(plan: Plan, run: RunDir) -> SharedFeatures:
    """The run's shared features: reused when current, else built by one process while the
    others wait for it. A step of the train and query stages (`miakit.pipeline`); MiakitError
    on settings that cannot work on features (`check_config`) or a bad extractor source."""
    check_config(plan.config)
    expected = features_hash(plan)
    while True:
        info = _current(run, expected)
        if info is None:
            with file_lock(run.transfer_lock) as mine:
                if mine:
                    clear_leftovers(run.transfer_dir, every=True)  # its lock is ours
                    info = _current(run, expected) or _build(plan, run, expected)
        if info is not None:
            return _loaded_features(plan, run, info)
        time.sleep(POLL_SECONDS)


def stored_features(plan: Plan, run: RunDir) -> SharedFeatures:
    """The run's shared features as a model job uses them: they must be current (built by
    `shared_features` before the job ran), else MiakitError naming the stage that builds them."""
    info = _current(run, features_hash(plan))
    if info is None:
        raise MiakitError(
            f"defences.transfer: the shared features in {run.transfer_dir} are missing "
            f"or stale; `miakit train {run.root}` builds them before any model is trained"
        )
    return _loaded_features(plan, run, info)


def _loaded_features(plan: Plan, run: RunDir, info: dict[str, Any]) -> SharedFeatures:
    return SharedFeatures(
        _stored_extractor(plan, run)[0],
        load_npy(run.transfer_features, mmap=True),
        _test_features(run),
        info,
    )


def _current(run: RunDir, expected: str) -> dict[str, Any] | None:
    try:
        info = json.loads(run.transfer_json.read_text())
    except (OSError, ValueError):
        return None
    files = (run.transfer_extractor, run.transfer_features)
    return info if info.get("hash") == expected and all(f.is_file() for f in files) else None


def _test_features(run: RunDir) -> np.ndarray | None:
    path = run.transfer_test_features
    return load_npy(path, mmap=True)[0] if path.is_file() else None


def _options(config: AuditConfig) -> dict[str, Any]:
    return config.model.model_dump(exclude={"arch"})


def _build(plan: Plan, run: RunDir, expected: str) -> dict[str, Any]:
    """Make the features, and the extractor unless the stored one is current (so that new
    views or another cut never pretrain it again); transfer.json goes first, comes back last."""
    run.transfer_json.unlink(missing_ok=True)
    config, pool = plan.config, plan.pool
    device = resolve_device(config.train.device)
    norm = Normalization(pool.mean, pool.std) if pool.mean is not None else None
    key = extractor_hash(config, device.type)
    if _about(run).get("extractor_hash") == key:
        extractor, about = _stored_extractor(plan, run)
    else:
        extractor, about = _new_extractor(plan, device, norm)
        about["extractor_hash"] = key
        state = {k: v.detach().cpu().contiguous() for k, v in extractor.state_dict().items()}
        metadata = {"about": json.dumps(about)}
        write_atomic(run.transfer_extractor, lambda tmp: save_file(state, str(tmp), metadata))
    frozen = split_model(extractor.to(device).eval(), config.defences.transfer.cut).frozen
    start = time.perf_counter()
    x = torch.from_numpy(pool.x).to(device)
    shape = _write_features(run.transfer_features, frozen, x, config.query.augmentations, norm)
    if pool.x_test is None:
        run.transfer_test_features.unlink(missing_ok=True)
    else:
        x_test = torch.from_numpy(pool.x_test).to(device)
        _write_features(run.transfer_test_features, frozen, x_test, 1, norm)
    info = {
        "hash": expected,
        "arch": config.model.arch,
        "cut": config.defences.transfer.cut,
        "feature_shape": list(shape),
        "augmentations": config.query.augmentations,
        **about,
        "seconds": {"extractor": about["seconds"], "features": time.perf_counter() - start},
    }
    save_json(run.transfer_json, info)
    return info


def _new_extractor(
    plan: Plan, device: torch.device, norm: Normalization | None
) -> tuple[nn.Module, dict[str, Any]]:
    """The extractor, loaded or pretrained, and what to record of it."""
    start = time.perf_counter()
    weights = plan.config.defences.transfer.weights
    if weights is None:
        extractor, classes, source = _pretrained(plan, device, norm)
    else:
        extractor, classes, source = _loaded(plan, weights)
    about = {"extractor_classes": classes, "source": source}
    return extractor, about | {"seconds": time.perf_counter() - start}


def _about(run: RunDir) -> dict[str, Any]:
    """What extractor.safetensors records of itself ({} when it is missing or unreadable)."""
    try:
        with safe_open(str(run.transfer_extractor), "pt") as f:
            return json.loads((f.metadata() or {}).get("about", "{}"))
    except (OSError, SafetensorError, ValueError):
        return {}


def _stored_extractor(plan: Plan, run: RunDir) -> tuple[nn.Module, dict[str, Any]]:
    """extractor.safetensors as a frozen network in eval mode, and what it records of itself."""
    config, about = plan.config, _about(run)
    extractor = build_model(
        config.model.arch, plan.pool.x.shape[1:], about["extractor_classes"], **_options(config)
    )
    extractor.load_state_dict(load_file(str(run.transfer_extractor)))
    device = resolve_device(config.train.device)
    return extractor.to(device).eval().requires_grad_(False), about


def _frozen_outputs(
    frozen: nn.Module, x: Tensor, augmentations: int, norm: Normalization | None
) -> Iterator[tuple[int, int, Tensor]]:
    """(first record, view, float outputs) of the frozen part over x, chunk by chunk: the one
    way the shared features and the features of other records are made."""
    check_views(x, augmentations)
    start = 0
    for chunk in x.split(CHUNK):
        for a, view in enumerate(views(model_inputs(chunk, norm), augmentations)):
            yield start, a, frozen(view).float()
        start += len(chunk)


@torch.no_grad()
def _write_features(
    path: Path, frozen: nn.Module, x: Tensor, augmentations: int, norm: Normalization | None
) -> tuple[int, ...]:
    """Write the frozen part's outputs [A, N, ...] chunk by chunk (they may exceed memory)."""
    shape = tuple(frozen(model_inputs(x[:1], norm)).shape[1:])
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(
            tmp, mode="w+", dtype=np.float32, shape=(augmentations, len(x), *shape)
        )
        for start, a, outputs in _frozen_outputs(frozen, x, augmentations, norm):
            out[a, start : start + len(outputs)] = outputs.cpu().numpy()
        out.flush()
        del out
    return shape


def _loaded(plan: Plan, path: Path) -> tuple[nn.Module, int, dict[str, Any]]:
    """model.arch with the weights file's state dict; its classifier (any class count) dropped."""
    config, pool = plan.config, plan.pool
    with torch.random.fork_rng(devices=[]):  # the unused classifier, seeded all the same
        torch.manual_seed(derive_seed(config.seed, "transfer", PRETRAIN_SEEDS["init"]))
        model = build_model(
            config.model.arch, pool.x.shape[1:], pool.num_classes, **_options(config)
        )
    try:
        state = load_file(str(path))
    except (OSError, SafetensorError) as exc:
        raise MiakitError(
            f"defences.transfer.weights: cannot read {path} as a safetensors file ({exc})"
        ) from exc
    prefix = classifier_name(model) + "."
    wanted = {k: tuple(v.shape) for k, v in model.state_dict().items() if not k.startswith(prefix)}
    given = {k: tuple(v.shape) for k, v in state.items() if not k.startswith(prefix)}
    problems = [f"missing {k}" for k in sorted(wanted.keys() - given.keys())]
    problems += [f"unexpected {k}" for k in sorted(given.keys() - wanted.keys())]
    problems += [
        f"{k} has shape {list(given[k])}, expected {list(wanted[k])}"
        for k in sorted(wanted.keys() & given.keys())
        if given[k] != wanted[k]
    ]
    if problems:
        more = f"; and {len(problems) - 8} more" if len(problems) > 8 else ""
        shown = "; ".join(problems[:8]) + more
        raise MiakitError(
            f"defences.transfer.weights: {path} does not hold a {config.model.arch} state dict "
            f"for records of shape {list(pool.x.shape[1:])} with these model.* settings: "
            f"{shown}. Give weights of that architecture, or set model.* to match them"
        )
    model.load_state_dict({k: state[k] for k in wanted}, strict=False)
    return model, pool.num_classes, {"weights": str(path), "sha256": file_hash(path)}


def _pretrained(
    plan: Plan, device: torch.device, norm: Normalization | None
) -> tuple[nn.Module, int, dict[str, Any]]:
    """model.arch trained by miakit on pretrain_data with the run's train recipe for
    pretrain_epochs (no early stopping: the test split belongs to the audit)."""
    config = plan.config
    transfer = config.defences.transfer
    data = _pretraining_data(plan)
    seeds = {p: derive_seed(config.seed, "transfer", i) for p, i in PRETRAIN_SEEDS.items()}
    records = np.arange(data.num_records)
    if transfer.pretrain_records is not None and transfer.pretrain_records < data.num_records:
        draw = np.random.default_rng(seeds["records"])
        records = np.sort(draw.choice(data.num_records, transfer.pretrain_records, replace=False))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seeds["init"])
        model = build_model(
            config.model.arch, data.x.shape[1:], data.num_classes, **_options(config)
        ).to(device)
    recipe = config.train.model_copy(
        update={"epochs": transfer.pretrain_epochs, "early_stopping_patience": None}
    )
    x = torch.from_numpy(data.x[records]).to(device)
    y = torch.from_numpy(data.y[records]).to(device)
    report = train_model(model, x, y, recipe, seeds["order"], norm=norm)
    source = {
        "pretrained_on": transfer.pretrain_data,
        "data_set": data.name,
        "records": len(records),
        "epochs": report.epochs,
        "final_batch_loss": report.final_loss,
    }
    return model, data.num_classes, source


def _pretraining_data(plan: Plan) -> Pool:
    """The rest of the pool's data set, or another data set with records of the pool's shape."""
    config, pool = plan.config, plan.pool
    data, name = config.data, config.defences.transfer.pretrain_data
    if name == "rest":
        full = load_pool(data.name, data.data_dir, path=data.path, download=data.download)
        kept = np.arange(full.num_records)
        if data.subsample is not None:
            kept = subsample_indices(full, data.subsample, subsample_seed(config))
        rest = np.setdiff1d(np.arange(full.num_records), kept)
        if not len(rest):
            raise MiakitError(
                "defences.transfer.pretrain_data: 'rest' means the records of "
                f"{data.name} that data.subsample leaves out of the pool, and none are left out; "
                f"set data.subsample below {full.num_records}, or give defences.transfer.weights"
            )
        return full.take(rest)
    if name not in DATASETS:
        raise MiakitError(
            f"defences.transfer.pretrain_data: {name!r} is neither 'rest' nor a registered data "
            f"set ({', '.join(sorted(DATASETS))})"
        )
    other = load_pool(name, data.data_dir, download=data.download)
    if other.x.shape[1:] != pool.x.shape[1:] or other.x.dtype != pool.x.dtype:
        raise MiakitError(
            f"defences.transfer.pretrain_data: {name} has records of shape "
            f"{list(other.x.shape[1:])} ({other.x.dtype}) but the pool's are "
            f"{list(pool.x.shape[1:])} ({pool.x.dtype}); pretrain on a data set of the same shape"
        )
    return other
