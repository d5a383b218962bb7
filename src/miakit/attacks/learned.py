"""Learned attacks: a classifier trained on reference (shadow) models' outputs to tell IN from OUT.

- `shokri` (Shokri et al., IEEE S&P 2017): one attack model per class on the full probability
  vector, or one overall model (`per_class: false`) that also sees the one-hot label.
- `salem` (Salem et al., ML-Leaks, NDSS 2019, adversary 1): the top-3 sorted probabilities, one
  shadow model, one class-agnostic MLP with a 64-unit hidden layer.

Training pairs (shadow model, pool record) are labelled by the keep matrix and drawn at random, at
most `max_samples` per attack model, with a generator seeded by `seed`; classifiers are seeded too,
so the same config gives the same scores. Scores are the attack model's member probability (its logit
for `torch-mlp`) on the target's outputs. Outputs are averaged over query augmentations (the papers
query once). Classifiers: scikit-learn's MLP (default), logistic regression or random forest, or a
small torch MLP (Adam, full-batch, `epochs` steps).
"""

from __future__ import annotations

import warnings
from abc import abstractmethod
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import Field

from miakit.attacks.base import Attack, AttackConfig, Setting, observed_setting, register
from miakit.errors import MiakitError
from miakit.signals import Signals, softmax, sorted_probs


class LearnedConfig(AttackConfig):
    classifier: Literal["mlp", "logistic", "random-forest", "torch-mlp"] = Field(
        "mlp",
        description="the attack model: scikit-learn's MLP, logistic regression or random "
        "forest, or a small torch MLP",
    )
    hidden: int = Field(64, ge=1, description="units of the MLPs' hidden layer")
    shadow_models: int | None = Field(
        None,
        ge=1,
        description="how many reference models serve as shadow models (the first ones); null: all",
    )
    max_samples: int = Field(
        20_000, ge=2, description="most (shadow model, record) training pairs per attack model"
    )
    epochs: int = Field(200, ge=1, description="training iterations of the MLPs")
    seed: int = Field(0, description="seeds the drawn training pairs and the classifiers")


class ShokriConfig(LearnedConfig):
    per_class: bool = Field(
        True, description="one attack model per class, or one overall that sees the label"
    )


class SalemConfig(LearnedConfig):
    shadow_models: int | None = Field(
        1, ge=1, description="how many reference models serve as shadow models (the paper: one)"
    )
    top_k: int = Field(3, ge=1, description="how many sorted probabilities are the features")


def _torch_mlp(
    x: np.ndarray, y: np.ndarray, test: np.ndarray, hidden: int, epochs: int, seed: int
) -> np.ndarray:
    import torch  # here, not at the top: commands that train nothing must not pay its import

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a network this small only loses time to thread synchronisation
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = torch.nn.Sequential(
                torch.nn.Linear(x.shape[1], hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
            ).double()
            optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
            inputs, targets = torch.from_numpy(x), torch.from_numpy(y.astype(np.float64))
            for _ in range(epochs):
                optimizer.zero_grad()
                logits = net(inputs)[:, 0]
                torch.nn.functional.binary_cross_entropy_with_logits(logits, targets).backward()
                optimizer.step()
            with torch.no_grad():
                return net(torch.from_numpy(test))[:, 0].numpy()
    finally:
        torch.set_num_threads(threads)


def fit_predict(
    kind: str, x: np.ndarray, y: np.ndarray, test: np.ndarray, hidden: int, epochs: int, seed: int
) -> np.ndarray:
    """Train a binary classifier on (x, y) and return its member scores on `test`."""
    if kind == "torch-mlp":
        return _torch_mlp(x, y, test, hidden, epochs, seed)
    # imported here: scikit-learn's import costs every command that never fits a classifier
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.neural_network import MLPClassifier

    if kind == "mlp":
        model = MLPClassifier(hidden_layer_sizes=(hidden,), max_iter=epochs, random_state=seed)
    elif kind == "logistic":
        model = LogisticRegression(max_iter=1000)
    else:
        model = RandomForestClassifier(n_estimators=100, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a fixed budget is the setting
        model.fit(x, y)
    return model.predict_proba(test)[:, 1]


class LearnedAttack(Attack):
    """Draws training pairs, reads their features chunk by chunk, fits one model per group."""

    Config = LearnedConfig
    reference_needs = ("any",)

    @abstractmethod
    def features(self, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Attack features [..., n, d] from logits [..., n, A, C]."""

    def per_class(self) -> bool:
        return False

    def score(self, signals: Signals, target: int, reference: Sequence[int]) -> np.ndarray:
        """Raises MiakitError where the options do not fit (`check`), without shadow models, or
        where an attack model's training pairs are all IN or all OUT."""
        self.check(observed_setting(signals, target, reference))
        cfg = self.config
        shadows = list(reference[: cfg.shadow_models])
        if not shadows:
            raise MiakitError(f"{self.name} needs at least one reference (shadow) model")
        groups = self._groups(signals)
        draws = [
            self._draw(len(shadows), records[records < signals.num_fit], g)
            for g, records in enumerate(groups)
        ]
        target_features, shadow_features = self._read(signals, target, shadows, draws)
        out = np.empty(signals.num_records)
        for g, (records, (model, record)) in enumerate(zip(groups, draws, strict=True)):
            y = signals.keep[np.asarray(shadows)[model], record]
            if y.all() or not y.any():
                raise MiakitError(
                    f"{self.name}: the training pairs of attack model {g} are all "
                    f"{'IN' if y.all() else 'OUT'}; use more shadow_models or per_class: false"
                )
            out[records] = fit_predict(
                cfg.classifier, shadow_features[g], y, target_features[records],
                cfg.hidden, cfg.epochs, cfg.seed,
            )  # fmt: skip
        return out

    def _groups(self, signals: Signals) -> list[np.ndarray]:
        """Record indices per attack model: one per class present, or all records."""
        if not self.per_class():
            return [np.arange(signals.num_records)]
        return [np.flatnonzero(signals.labels == c) for c in np.unique(signals.labels)]

    def _draw(self, shadows: int, records: np.ndarray, group: int) -> tuple[np.ndarray, np.ndarray]:
        """(shadow position, record) training pairs ordered by record, seeded by (seed, group)."""
        rng = np.random.default_rng([self.config.seed, group])
        size = shadows * records.size
        pick = rng.choice(size, min(size, self.config.max_samples), replace=False)
        model, record = pick // records.size, records[pick % records.size]
        order = np.lexsort((model, record))
        return model[order], record[order]

    def _read(
        self,
        signals: Signals,
        target: int,
        shadows: list[int],
        draws: list[tuple[np.ndarray, np.ndarray]],
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Features of the target on every record, and of the drawn (shadow, record) pairs."""
        target_parts: list[np.ndarray] = []
        shadow_parts: list[list[np.ndarray]] = [[] for _ in draws]
        for records in signals.record_chunks(len(shadows) + 1):
            logits = signals.read_logits([target, *shadows], records)
            feats = self.features(logits, signals.labels[records])
            target_parts.append(feats[0])
            for parts, (model, record) in zip(shadow_parts, draws, strict=True):
                inside = (record >= records.start) & (record < records.stop)
                parts.append(feats[1 + model[inside], record[inside] - records.start])
        return np.concatenate(target_parts), [np.concatenate(parts) for parts in shadow_parts]


@register
class Shokri(LearnedAttack):
    name = "shokri"
    Config = ShokriConfig

    def per_class(self) -> bool:
        return self.config.per_class

    def features(self, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
        probs = softmax(logits).mean(axis=-2)
        if self.config.per_class:
            return probs
        onehot = np.broadcast_to(np.eye(logits.shape[-1])[labels], probs.shape)
        return np.concatenate([probs, onehot], axis=-1)


@register
class Salem(LearnedAttack):
    name = "salem"
    Config = SalemConfig

    def check(self, setting: Setting) -> None:
        """MiakitError where top_k exceeds the number of classes."""
        if self.config.top_k > setting.num_classes:
            raise MiakitError(
                f"attack_options.salem.top_k: top_k = {self.config.top_k} exceeds the "
                f"{setting.num_classes} classes; lower top_k"
            )

    def features(self, logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
        return sorted_probs(logits, self.config.top_k).mean(axis=-2)
