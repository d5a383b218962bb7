"""miakit: membership inference audits of machine-learning models, from Python.

Three levels (the README's "Python API"):

- arrays, no run directory: `score` (an attack's membership scores from models' logits),
  `evaluate` (AUC, TPR at low FPR with intervals, PPV: the rows of metrics.csv), `attacks` (the
  registered attacks, their papers and options);
- runs: `Run` (a run directory's status, metrics, scores, per-record exposure, `Verdict`, ROC
  and report, shown in Jupyter by its verdict and ROC);
- audits: `audit` (a whole audit from a config, a dict or in-memory data and models).

Errors are `MiakitError` (its subclasses say more), with the messages the CLI prints.
"""

from __future__ import annotations

import sys
from importlib import import_module
from types import ModuleType
from typing import Any

from miakit.errors import AttackUnavailable, MiakitError, StaleInputs

__version__ = "0.1.0"

#: The public names loaded when first read (PEP 562), so that `import miakit.config` or the
#: CLI's `--help` import no more than they use: name → the module defining it.
_LAZY = {
    "AttackInfo": "miakit.api.arrays",
    "AttackOption": "miakit.api.arrays",
    "attacks": "miakit.api.arrays",
    "evaluate": "miakit.api.arrays",
    "score": "miakit.api.arrays",
    "Run": "miakit.api.runs",
    "Verdict": "miakit.report.verdict",
    "audit": "miakit.api.audits",
}

__all__ = ["AttackUnavailable", "MiakitError", "StaleInputs", "__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'miakit' has no attribute {name!r}")
    value = getattr(import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


class _Package(ModuleType):
    """miakit's module type. `miakit.attacks` and `miakit.evaluate` are public functions and
    the names of subpackages; importing a subpackage sets it as an attribute of its parent,
    which would hide the function. Here that assignment is dropped (the subpackage stays in
    sys.modules, where `from miakit.attacks import x` finds it), so the names always read as
    the functions. Inside miakit, import from those subpackages with `from … import …`, never
    `import miakit.attacks.x as y`, which reads the attribute (tests/test_api_surface.py)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _LAZY and isinstance(value, ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
