"""What a deployed model's API returns (`query.output`), as logits every attack can read.

Stored logits stay full; `Signals` restricts each chunk as it is read, so every attack, target and
reference model sees the same restriction, and changing `query.output` re-runs the attacks (the
scores' content hash records it, `chain.py`) without retraining or re-querying a model.

The outputs, from most to least informative (p = softmax of the logits, C classes):

- `logits`: the logits as they are.
- `probabilities`: p in float32, what a served model usually returns: p_y of a confident record
  rounds to 1, the other classes keep their small values down to float32's smallest subnormal.
- `rounded:d`: p rounded to d decimals (numpy's round-half-even), as an API that prints a few
  digits.
- `top-k:k`: the k largest float32 probabilities and their classes; the other C − k classes
  share the remaining mass 1 − Σ top-k evenly (never more than the k-th probability).
- `label`: the predicted class alone (argmax of the logits; the first of tied classes).

Each is represented as log-probabilities: log max(q, floor), with q what the API returned and the
floor the smallest value it could not tell from 0 (float32's smallest subnormal, about 1.4e-45, or
half the last digit, 0.5·10⁻ᵈ, for `rounded:d`). So every restricted logit is finite, the class
order within a record is kept (ties where the API ties), and the softmax of the representation is
q renormalized after the floor. `label` is the one-hot q of the predicted class (0 for it, log
floor ≈ −103.3 for the others); attacks that need per-class scores are skipped on it
(`Attack.unavailable`), and the label-only attacks read only its argmax. Log-probabilities are
the logits up to a constant per record, which every softmax-based signal ignores; RMIA's Taylor
soft-margin does not, so it runs on `logits` only (its `signal: softmax` runs on all).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

import numpy as np

from miakit.errors import MiakitError

#: What `query.output` accepts; d and k are positive integers.
OUTPUT_PATTERN = r"logits|probabilities|rounded:[1-9][0-9]*|top-k:[1-9][0-9]*|label"

#: float32's smallest positive value: an API's float32 probability below it reads as 0.
FLOAT32_FLOOR = float(np.finfo(np.float32).smallest_subnormal)

#: The most decimals `rounded:d` takes: float64 probabilities carry about 16 digits.
MAX_DIGITS = 15


@dataclass(frozen=True)
class Output:
    """A parsed `query.output`: its kind and, for `rounded` and `top-k`, its parameter (d or k)."""

    kind: Literal["logits", "probabilities", "rounded", "top-k", "label"]
    parameter: int | None = None

    @property
    def scores(self) -> bool:
        """Whether the API returns per-class scores (everything but `label`)."""
        return self.kind != "label"


def parse_output(spec: str) -> Output:
    """The `Output` that `spec` names; MiakitError naming query.output when it names none."""
    if not re.fullmatch(OUTPUT_PATTERN, spec):
        raise MiakitError(
            f"query.output: {spec!r} is not one of logits, probabilities, rounded:d, top-k:k, "
            "label (d, k positive integers, e.g. rounded:2, top-k:1)"
        )
    kind, _, parameter = spec.partition(":")
    output = Output(kind, int(parameter) if parameter else None)  # type: ignore[arg-type]
    if output.kind == "rounded" and output.parameter > MAX_DIGITS:
        raise MiakitError(
            f"query.output: rounded:{output.parameter} asks for more decimals than float64 "
            f"probabilities hold; use at most rounded:{MAX_DIGITS}, or probabilities"
        )
    return output


def check_output(spec: str, num_classes: int) -> None:
    """`spec` is valid for a pool of `num_classes` classes (top-k needs k < C); `plan` calls this
    before anything trains. Raises MiakitError naming query.output."""
    output = parse_output(spec)
    if output.kind == "top-k" and output.parameter >= num_classes:
        raise MiakitError(
            f"query.output: top-k:{output.parameter} returns every class of this "
            f"{num_classes}-class pool; use top-k:k with k < {num_classes}, or probabilities"
        )


def _softmax(z: np.ndarray) -> np.ndarray:
    shifted = z - z.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


def restrict_logits(logits: np.ndarray, spec: str) -> np.ndarray:
    """The API's answer to finite float64 logits [..., C] under `spec`, as float64 log-probabilities
    [..., C] (see the module docstring); `logits` itself is returned for `logits`."""
    output = parse_output(spec)
    if output.kind == "logits":
        return logits
    z = np.asarray(logits, dtype=np.float64)
    if output.kind == "label":
        q = np.zeros_like(z)
        np.put_along_axis(q, np.argmax(z, axis=-1)[..., None], 1.0, axis=-1)
        return np.log(np.maximum(q, FLOAT32_FLOOR))
    if output.kind == "rounded":
        digits = output.parameter
        q = np.round(_softmax(z), digits)
        return np.log(np.maximum(q, 0.5 * 10.0**-digits))
    p = _softmax(z).astype(np.float32).astype(np.float64)
    if output.kind == "top-k":
        k, classes = output.parameter, z.shape[-1]
        order = np.argsort(-p, axis=-1, kind="stable")
        top = np.take_along_axis(p, order[..., :k], axis=-1)
        rest = np.maximum(1.0 - top.sum(axis=-1, keepdims=True), 0.0) / (classes - k)
        rest = np.minimum(rest, top[..., -1:])
        q = np.broadcast_to(rest, p.shape).copy()
        np.put_along_axis(q, order[..., :k], top, axis=-1)
        p = q
    return np.log(np.maximum(p, FLOAT32_FLOOR))
