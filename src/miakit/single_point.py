"""The with/without experiment: for chosen records x, how reliably can an attacker tell whether a
model was trained on x?

Each round draws a base set of `subset_size` training records (every tested record excluded),
trains one model on it, and for each tested record x one more model on the base set plus x, with
the round's init and data-order seeds, so a pair differs only by x. x's loss under each model is
recorded. Rounds are shared: K tested records cost K + 1 models a round, not 2K. Fresh pairs
(`eval_pairs` more rounds) then measure the error rate of the threshold fitted on the rounds.

Everything is written to the output folder as it is computed (`losses.npz` after every round), so
an interrupted experiment resumes where it stopped; a changed config starts afresh.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from miakit.architectures import check_code_allowed, is_sklearn
from miakit.config import SinglePointConfig
from miakit.data import Pool, load_pool
from miakit.errors import MiakitError
from miakit.evaluate.single_point import PowerAtAlpha, error_rate, power_at_alpha
from miakit.models import build_model
from miakit.report.single_point_plot import plot_with_without
from miakit.seeding import derive_seed, rng
from miakit.signals import cross_entropy
from miakit.store import (
    clear_leftovers,
    content_hash,
    load_npy,
    save_json,
    save_text,
    write_atomic,
)
from miakit.train.inputs import Normalization, model_inputs
from miakit.train.trainer import resolve_device, train_model


@dataclass(frozen=True)
class RecordExposure:
    index: int
    label: int
    losses_with: np.ndarray
    losses_without: np.ndarray
    power: PowerAtAlpha
    error_rate: float


def choose_targets(config: SinglePointConfig, pool: Pool) -> list[int]:
    """The explicit indices, then k random records, then the top-k LT-IQR records of a run."""
    chosen = config.target_list()
    if config.targets.random:
        others = np.setdiff1d(np.arange(pool.num_records), chosen)
        picks = rng(config.seed, "single-point-targets").choice(
            others, config.targets.random, replace=False
        )
        chosen += [int(i) for i in picks]
    if config.targets.top_k:
        chosen += _most_vulnerable(config, pool, set(chosen))
    if not chosen:
        raise MiakitError(
            "no record to test: set target_index, targets.indices, targets.random, or "
            "targets.from_run with targets.top_k"
        )
    bad = [i for i in chosen if not 0 <= i < pool.num_records]
    if bad:
        raise MiakitError(
            f"target indices {bad} are outside the pool of {pool.num_records} records"
        )
    return list(dict.fromkeys(chosen))


def _most_vulnerable(config: SinglePointConfig, pool: Pool, taken: set[int]) -> list[int]:
    run = config.targets.from_run
    if run is None:
        raise MiakitError("targets.top_k needs targets.from_run: a run with scores/lt-iqr.npy")
    recorded = json.loads((Path(run) / "pool.json").read_text())["fingerprint"]
    if recorded != pool.fingerprint():
        raise MiakitError(f"targets.from_run: {run} was run on other data than {pool.name!r}")
    ranking = np.argsort(-load_npy(Path(run) / "scores" / "lt-iqr.npy").mean(axis=0), kind="stable")
    return [int(i) for i in ranking if int(i) not in taken][: config.targets.top_k]


class _Trainer:
    """Trains one model of a round on given pool rows and returns its losses on the targets."""

    def __init__(
        self,
        config: SinglePointConfig,
        pool: Pool,
        targets: list[int],
        on_epoch: Callable[[int, int], None] | None = None,
    ):
        self.config, self.pool, self.on_epoch = config, pool, on_epoch
        self.device = resolve_device(config.train.device)
        self.x = torch.from_numpy(pool.x).to(self.device)
        self.y = torch.from_numpy(pool.y).to(self.device)
        self.targets = torch.tensor(targets, device=self.device)
        self.norm = Normalization(pool.mean, pool.std) if pool.mean is not None else None

    def losses(self, rows: np.ndarray, round_seed: int) -> np.ndarray:
        cfg = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(cfg.seed, "single-point-init", round_seed))
            model = build_model(
                cfg.model.arch,
                self.pool.x.shape[1:],
                self.pool.num_classes,
                **cfg.model.model_dump(exclude={"arch"}),
            ).to(self.device)
        index = torch.from_numpy(rows).to(self.device)
        order_seed = derive_seed(cfg.seed, "single-point-order", round_seed)
        augment_seed = derive_seed(cfg.seed, "single-point-augment", round_seed)
        train_model(
            model,
            self.x[index],
            self.y[index],
            cfg.train,
            order_seed,
            augment_seed=augment_seed,
            norm=self.norm,
            on_epoch=self.on_epoch,
        )
        model.eval()
        with torch.no_grad():
            logits = model(model_inputs(self.x[self.targets], self.norm)).double().cpu().numpy()
        return cross_entropy(logits[:, None, :], self.y[self.targets].cpu().numpy())[:, 0]


def _base_rows(config: SinglePointConfig, pool: Pool, targets: list[int], round_seed: int):
    candidates = np.setdiff1d(np.arange(pool.num_records), targets)
    if config.subset_size > len(candidates):
        raise MiakitError(
            f"subset_size {config.subset_size} exceeds the {len(candidates)} pool records "
            "that are not tested"
        )
    draw = rng(config.seed, "single-point-base", round_seed)
    return np.sort(draw.choice(candidates, config.subset_size, replace=False))


def run_single_point(
    config: SinglePointConfig,
    out: Path,
    on_round: Callable[[int, int], None] | None = None,
    on_epoch: Callable[[int, int], None] | None = None,
) -> list[RecordExposure]:
    """Run (or resume) the experiment; write summary.json, summary.csv, losses.npz, histograms.
    on_round(done, total) and on_epoch(done, total) report progress (of each model's training).
    A python: architecture needs the opt-in (`miakit.architectures.check_code_allowed`)."""
    check_code_allowed(config.model.arch)
    pool = load_pool(config.data.name, config.data.data_dir)
    if config.num_classes is not None and config.num_classes != pool.num_classes:
        raise MiakitError(
            f"num_classes is {config.num_classes} but {pool.name!r} has {pool.num_classes} classes"
        )
    if is_sklearn(config.model.arch) or config.model.target_weights is not None:
        raise MiakitError(
            "model.arch sklearn, model.target_weights: the single-point experiment trains torch "
            "models of its own; use a built-in or python: architecture"
        )
    targets = choose_targets(config, pool)
    rounds = config.n_iterations + config.eval_pairs
    # the estimator and checkpoint settings, refused above, stay out of the resume hash
    unused = {"estimator", "params", "standardize", "target_weights", "target_members"}
    settings = config.model_dump(mode="json", exclude={"model": unused})
    clear_leftovers(out)
    state = _State.open(out, content_hash(settings), len(targets), rounds)
    trainer = _Trainer(config, pool, targets, on_epoch)
    for r in range(rounds):
        if state.done[r]:
            if on_round:
                on_round(r + 1, rounds)
            continue
        base = _base_rows(config, pool, targets, r)
        state.without[:, r] = trainer.losses(base, r)
        for k, x in enumerate(targets):
            state.with_[k, r] = trainer.losses(np.append(base, x), r)[k]
        state.done[r] = True
        state.save()
        if on_round:
            on_round(r + 1, rounds)
    results = _summarize(config, pool, targets, state)
    _write_outputs(config, out, results)
    return results


@dataclass
class _State:
    """Per-round losses, saved after every round so an interrupted experiment resumes."""

    path: Path
    config_hash: str
    with_: np.ndarray
    without: np.ndarray
    done: np.ndarray

    @classmethod
    def open(cls, out: Path, config_hash: str, targets: int, rounds: int) -> _State:
        path = out / "losses.npz"
        if path.is_file():
            with np.load(path, allow_pickle=False) as saved:
                if str(saved["config_hash"]) == config_hash:
                    return cls(path, config_hash, saved["with"], saved["without"], saved["done"])
        empty = np.full((targets, rounds), np.nan)
        return cls(path, config_hash, empty, empty.copy(), np.zeros(rounds, dtype=bool))

    def save(self) -> None:
        def write(tmp: Path) -> None:
            with open(tmp, "wb") as f:
                np.savez(
                    f,
                    config_hash=self.config_hash,
                    done=self.done,
                    **{"with": self.with_, "without": self.without},
                )

        write_atomic(self.path, write)


def _summarize(
    config: SinglePointConfig, pool: Pool, targets: list[int], state: _State
) -> list[RecordExposure]:
    fit = slice(0, config.n_iterations)
    held_out = slice(config.n_iterations, None)
    results = []
    for k, x in enumerate(targets):
        power = power_at_alpha(
            state.with_[k, fit], state.without[k, fit], config.alpha, config.gaussian_fit
        )
        results.append(
            RecordExposure(
                index=x,
                label=int(pool.y[x]),
                losses_with=state.with_[k, fit],
                losses_without=state.without[k, fit],
                power=power,
                error_rate=error_rate(
                    state.with_[k, held_out], state.without[k, held_out], power.threshold_empirical
                ),
            )
        )
    return sorted(results, key=lambda r: (-r.power.power_empirical, -r.power.power_gaussian))


def _write_outputs(config: SinglePointConfig, out: Path, results: list[RecordExposure]) -> None:
    rows = [
        {
            "rank": rank,
            "index": r.index,
            "label": r.label,
            **r.power.as_dict(),
            "error_rate": r.error_rate,
        }
        for rank, r in enumerate(results, start=1)
    ]
    save_json(out / "summary.json", {"config": config.model_dump(mode="json"), "records": rows})
    save_text(out / "summary.csv", pd.DataFrame(rows).to_csv(index=False))
    if config.save_plots:
        for r in results:
            plot_with_without(
                out / f"hist_{r.index}.png",
                f"record {r.index} (label {r.label})",
                r.losses_with,
                r.losses_without,
                r.power,
            )
