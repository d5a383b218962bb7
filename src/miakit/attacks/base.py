"""The attack contract and registry.

An attack maps Signals to one score per pool record for a target model, **higher = more likely
member**, using only the reference models it is given, and never the membership of the record it
scores. `score_targets` scores many targets at once and only the records asked for (the others
need no reference and get NaN); attacks built on per-record statistics of the references fit
them once for all targets (`engine`). Each attack has a pydantic config whose defaults are its
paper's, and is registered under a name the config and CLI use.

Fit and score (DESIGN): `Attack.fit(signals, targets, references, records)` is scikit-learn's
`fit` for a set of targets: one pass over the pool that learns what the attack learns from the
references (per-record statistics, global spreads, populations, thresholds, classifiers) and
scores the pool records in the same pass (`Fit.scores`; keeping per-record statistics of every
target instead would cost T · N · A floats). `Fit.score_queries(logits, labels)` then scores
query-only records, which no model trained on (out-of-distribution sets), from what was fitted
plus every model's outputs on them. `FittedAttack`s (LiRA, Attack-R) implement both halves
themselves, so their pool pass never sees a query record; the other attacks get a bridge
(`AppendedQueries`) that appends the queries to the pool (`Signals.with_queries`) and scores again
through `score` / `score_targets`, which handle `Signals.queries` as they always did. Signals that
hold query-only records can still be passed to `score_targets` directly: a `FittedAttack` splits
them into pool and queries (`Signals.split_queries`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from miakit.attacks.engine import Layout
from miakit.errors import MiakitError
from miakit.output_restriction import parse_output
from miakit.signals import Signals


class AttackConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Setting:
    """What an attack's options must fit: the pool's classes, the fewest reference models any
    target has, and the rows of each model's loss trace (None: no traces). `plan` knows all three
    before any model trains (`validate.check_attack_settings`)."""

    num_classes: int
    num_references: int
    trace_points: int | None


def observed_setting(signals: Signals, target: int, reference: Sequence[int]) -> Setting:
    """The setting the attack meets when scoring `target` against `reference`: what the run
    holds, which can fall short of the plan (early stopping shortens traces)."""
    traces = signals.traces
    points = None if traces is None else traces[target].shape[0]
    return Setting(signals.num_classes, len(reference), points)


class Attack(ABC):
    name: ClassVar[str]
    Config: ClassVar[type[AttackConfig]] = AttackConfig
    #: What the attack needs, for every record it scores, among the target's reference models:
    #: "in" (one trained on the record), "out" (one not trained on it), "any" (one at all).
    #: Empty for attacks that look at the target alone. `plan` checks it before anything trains
    #: (`validate.check_design`).
    reference_needs: ClassVar[tuple[str, ...]] = ()
    #: What the attack reads of the models' query outputs: "scores" (per-class scores: it runs on
    #: every `query.output` but `label`), "labels" (the predicted class: it runs on every
    #: output) or "nothing" (e.g. loss traces). `unavailable` skips it where the output lacks it.
    output_needs: ClassVar[Literal["scores", "labels", "nothing"]] = "scores"
    #: Whether it reads the records' features (`Signals.features`), as QMIA's regressor does.
    needs_features: ClassVar[bool] = False
    #: Whether it reads a causal LM's per-token outputs (`Signals.tokens`: text records only);
    #: `attacks: all` leaves such attacks out.
    needs_tokens: ClassVar[bool] = False
    #: the `TokenSignals` fields it reads (attacks that need tokens: `attacks.text.TextAttack`)
    token_stats: ClassVar[tuple[str, ...]] = ()
    #: reads the reference LM's token log-probs (`TokenSignals.reference_logprobs`, lm-ratio)
    needs_reference_lm: ClassVar[bool] = False

    def __init__(self, config: AttackConfig | None = None):
        self.config = config if config is not None else self.Config()

    @property
    def reference_counts(self) -> str | None:
        """The `reference_counts` option ("equal" or "all", `engine`) of the attacks that fit on
        their references and have one (LiRA but lira-global, Attack-R), else None."""
        return getattr(self.config, "reference_counts", None) if self.reference_needs else None

    def check(self, setting: Setting) -> None:
        """Raise MiakitError, naming the option, where the options do not fit the setting; `plan`
        calls this before anything trains, and attacks whose options depend on the setting call
        it again when scoring. This default accepts every setting."""
        return None

    def unavailable(self, signals: Signals) -> str | None:
        """Why the attack cannot run on these signals, in words (the attack stage skips it and
        metrics.json gives the reason), or None when it can: per-class scores under
        `query.output: label`, or features the signals do not hold."""
        if self.output_needs == "scores" and not parse_output(signals.output).scores:
            return (
                f"{self.name} needs the target's per-class scores; query.output={signals.output} "
                "returns the predicted class only"
            )
        if self.needs_tokens and signals.tokens is None:
            return (
                f"{self.name} needs a causal language model's per-token outputs, which this "
                "run does not have (text records and model.arch gpt)"
            )
        if self.needs_features and signals.features is None:
            return (
                f"{self.name} needs the records' features, which this run does not have "
                "(brought-in models without run.yaml, or query-only records)"
            )
        return None

    @abstractmethod
    def score(self, signals: Signals, target: int, reference: Sequence[int]) -> np.ndarray:
        """Scores [N] for the target model's pool records; higher = more likely member."""

    def score_leave_one_out(self, signals: Signals, targets: Sequence[int]) -> np.ndarray:
        """Scores [T, N]: each target in turn, every other model as a reference."""
        return self.score_targets(signals, targets, None)

    def score_targets(
        self,
        signals: Signals,
        targets: Sequence[int],
        references: Sequence[int] | None,
        records: np.ndarray | None = None,
    ) -> np.ndarray:
        """Scores [T, N] of each target with the given references, or with every other model
        (None: leave-one-out). `records`: bool [N] (or over the pool records alone), the records
        to score; the others get NaN and need no reference. Query-only records are always scored.

        This default scores target by target; attacks that fit per-record statistics of the
        references override it to fit once for all targets (`engine`)."""
        layout = Layout(signals, targets, references, records)
        all_models = range(signals.num_models)
        rows = [
            self.score(signals, t, [m for m in all_models if m != t])
            if references is None
            else self.score(signals, t, references)
            for t in layout.targets
        ]
        return np.where(layout.scored, np.stack(rows), np.nan)

    def fit(
        self,
        signals: Signals,
        targets: Sequence[int],
        references: Sequence[int] | None,
        records: np.ndarray | None = None,
    ) -> Fit:
        """The attack fitted on the pool for these targets (module docstring); arguments as
        `score_targets`. This default is the bridge `AppendedQueries`."""
        return AppendedQueries(self, signals, targets, references, records)


class Fit(ABC):
    """An attack fitted on the pool for T targets: `scores` [T, N] of the pool records (NaN
    where not asked for), and `score_queries` for query-only records."""

    scores: np.ndarray

    @abstractmethod
    def score_queries(self, logits: Sequence[np.ndarray], labels: np.ndarray) -> np.ndarray:
        """Scores [T, K] of K query-only records from every model's logits on them (M arrays
        [K, A, C], the pool's order of models) and their labels [K]."""


class AppendedQueries(Fit):
    """The bridge for attacks without a `Fit` of their own: the pool scored by `score_targets`,
    query-only records by scoring again with them appended (`Signals.with_queries`), which by
    the contract of `Signals.queries` leaves the pool's scores as they were. The pool is scored
    when `scores` is first read, unless a `score_queries` pass has scored it already."""

    def __init__(
        self,
        attack: Attack,
        signals: Signals,
        targets: Sequence[int],
        references: Sequence[int] | None,
        records: np.ndarray | None,
    ):
        self.attack, self.signals, self.records = attack, signals, records
        self.targets, self.references = targets, references
        self._scores: np.ndarray | None = None

    @property
    def scores(self) -> np.ndarray:
        if self._scores is None:
            self._scores = self.attack.score_targets(
                self.signals, self.targets, self.references, self.records
            )
        return self._scores

    def score_queries(self, logits: Sequence[np.ndarray], labels: np.ndarray) -> np.ndarray:
        extended = self.signals.with_queries(logits, labels)
        scores = self.attack.score_targets(extended, self.targets, self.references, self.records)
        if self._scores is None:
            self._scores = scores[:, : self.signals.num_records]
        return scores[:, self.signals.num_records :]


class AllTargetsAttack(Attack):
    """An attack that fits per-record statistics of the references once for all targets
    (`engine`): `score_targets` is its computation, and one target is scored through it."""

    def score(self, signals: Signals, target: int, reference: Sequence[int]) -> np.ndarray:
        return self.score_targets(signals, [target], reference)[0]

    @abstractmethod
    def score_targets(
        self,
        signals: Signals,
        targets: Sequence[int],
        references: Sequence[int] | None,
        records: np.ndarray | None = None,
    ) -> np.ndarray:
        """Scores [T, N], as `Attack.score_targets`."""


class FittedAttack(AllTargetsAttack):
    """An attack with a `Fit` of its own (`fit`): `score_targets` is its fit's pool scores,
    followed by the scores of the query-only records the signals hold, if any."""

    @abstractmethod
    def fit(
        self,
        signals: Signals,
        targets: Sequence[int],
        references: Sequence[int] | None,
        records: np.ndarray | None = None,
    ) -> Fit:
        """The attack fitted on the pool records of `signals` (which hold no query-only ones)."""

    def score_targets(
        self,
        signals: Signals,
        targets: Sequence[int],
        references: Sequence[int] | None,
        records: np.ndarray | None = None,
    ) -> np.ndarray:
        if not signals.queries:
            return self.fit(signals, targets, references, records).scores
        pool, logits, labels = signals.split_queries()
        within = None if records is None else np.asarray(records, dtype=bool)[: pool.num_records]
        fit = self.fit(pool, targets, references, within)
        return np.concatenate([fit.scores, fit.score_queries(logits, labels)], axis=1)


ATTACKS: dict[str, type[Attack]] = {}


def register(cls: type[Attack]) -> type[Attack]:
    if cls.name in ATTACKS:
        raise ValueError(f"attack name {cls.name!r} registered twice")
    ATTACKS[cls.name] = cls
    return cls


def make_attack(name: str, options: dict[str, Any] | None = None) -> Attack:
    """Instantiate a registered attack; unknown names and bad options get errors naming the key."""
    if name not in ATTACKS:
        raise MiakitError(f"unknown attack {name!r}; known attacks: {', '.join(sorted(ATTACKS))}")
    cls = ATTACKS[name]
    try:
        config = cls.Config.model_validate(options or {})
    except ValidationError as exc:
        problems = "; ".join(
            f"attack_options.{name}.{'.'.join(map(str, e['loc']))}: "
            + ("unknown key" if e["type"] == "extra_forbidden" else e["msg"])
            for e in exc.errors()
        )
        raise MiakitError(f"invalid attack options: {problems}") from exc
    return cls(config)
