"""miakit: membership inference audits of machine-learning models, from Python.

Three levels (the README's "Python API"):

- arrays, no run directory: `score` (an attack's membership scores from models' logits),
  `evaluate` (AUC, TPR at low FPR with intervals, PPV: the rows of metrics.csv), `attacks` (the
  registered attacks, their papers and options);
- runs: `Run` (a run directory's status, metrics, scores, per-record exposure, verdict, ROC and
  report, shown in Jupyter by its verdict and ROC);
- audits: `audit` (a whole audit from a config, a dict or in-memory data and models).

Errors are `MiakitError` (its subclasses say more), with the messages the CLI prints.
"""

# `miakit.attacks` and `miakit.evaluate` are public functions and the names of subpackages.
# Importing a subpackage for the first time sets it as an attribute of this package, so both
# subpackages are imported here, before the functions are bound over those names; later imports
# find them in sys.modules and leave the names alone. Inside miakit, import from them with
# `from miakit.attacks import …` or `from miakit.evaluate import …`, never
# `import miakit.attacks.x as y`, which reads the attribute (tests/test_api_surface.py holds both).
from importlib import import_module as _import_module

for _subpackage in ("miakit.attacks", "miakit.evaluate"):
    _import_module(_subpackage)

from miakit.api.arrays import AttackInfo, AttackOption, attacks, evaluate, score  # noqa: E402
from miakit.api.audits import audit  # noqa: E402
from miakit.api.runs import Run  # noqa: E402
from miakit.errors import AttackUnavailable, MiakitError  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "AttackInfo",
    "AttackOption",
    "AttackUnavailable",
    "MiakitError",
    "Run",
    "__version__",
    "attacks",
    "audit",
    "evaluate",
    "score",
]
