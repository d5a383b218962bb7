"""The names of figures in metrics.json (and of the threshold table's columns), formatted and
parsed in one place.

A name is `what`, optionally followed by `@` and the point it is read at, `fpr=x`, `prior=p` and
`set=s` in that order, comma-separated, numbers written with %g:

    auc, balanced_accuracy                 figures of the whole ROC
    tpr@fpr=0.001, fp@fpr=0.001            TPR at FPR x, and the false positives behind it
    shadow_tpr@fpr=0.01, shadow_fpr@...    TPR′ and FPR′ of the shadow-calibrated threshold
    ppv@fpr=0.01,prior=0.1                 PPV at FPR x when a share p of records are members
    ppv_target@prior=0.1                   the threshold table's PPV columns (fpr is a column)
    ood_fpr@fpr=0.01,set=noise             share of an out-of-distribution set called member
"""

from __future__ import annotations

from dataclasses import dataclass

from miakit.errors import MiakitError

#: The parameters a name can carry, in the order they are written.
PARAMETERS = ("fpr", "prior", "set")


@dataclass(frozen=True)
class MetricKey:
    """What a figure is (`name`: auc, tpr, ppv, ood_fpr, ...), at which FPR, prior share of
    members, and out-of-distribution set (`OODConfig.label`); str() gives its name in
    metrics.json, `parse` reads one back."""

    name: str
    fpr: float | None = None
    prior: float | None = None
    set: str | None = None

    def __post_init__(self) -> None:
        if not self.name or any(c in self.name for c in "@,="):
            raise MiakitError(f"metric name {self.name!r}: give a name without '@', ',' or '='")
        if self.set is not None and (not self.set or any(c in self.set for c in "@,=")):
            raise MiakitError(f"metric set {self.set!r}: give a label without '@', ',' or '='")

    def __str__(self) -> str:
        parts = [
            *([f"fpr={self.fpr:g}"] if self.fpr is not None else []),
            *([f"prior={self.prior:g}"] if self.prior is not None else []),
            *([f"set={self.set}"] if self.set is not None else []),
        ]
        return f"{self.name}@{','.join(parts)}" if parts else self.name

    @classmethod
    def parse(cls, text: str) -> MetricKey:
        """The key of a name written by str(); MiakitError naming the text if it is not one."""
        name, at, rest = text.partition("@")
        params: dict[str, str] = {}
        for part in rest.split(",") if at else []:
            key, eq, value = part.partition("=")
            if not eq or key not in PARAMETERS or key in params:
                raise MiakitError(f"{text!r} is not a metric name (e.g. 'tpr@fpr=0.001')")
            params[key] = value
        if list(params) != [k for k in PARAMETERS if k in params]:
            raise MiakitError(
                f"{text!r}: write the parameters in the order {', '.join(PARAMETERS)}"
            )
        try:
            return cls(
                name,
                fpr=float(params["fpr"]) if "fpr" in params else None,
                prior=float(params["prior"]) if "prior" in params else None,
                set=params.get("set"),
            )
        except ValueError as exc:
            raise MiakitError(f"{text!r} is not a metric name: {exc}") from exc
