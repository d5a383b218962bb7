"""The audit's verdict: the few figures an engineer acts on, computed from an evaluated run, and
the sentences the CLI prints and report.html opens with.

- The strongest attack: the highest mean TPR at FPR 0.1% over the targets (ties: at 1%, then
  AUC), with its intervals. Where no attack catches a member at the verdict's FPR (0.1%, or the
  smallest the data resolve) in any target, as a label-only attack whose 0/1 score calls every
  correctly labelled record, the verdict says that no attack separates members there, and gives
  the best one's AUC and the lowest FPR at which it first catches members (the first vertex of its
  ROC with a member, mean over the targets); attacks silent at that FPR beside a stronger one are
  named with theirs.
- What its calls are worth at realistic priors: the PPV at priors 1% and 10% of the TPR and
  FPR its shadow-calibrated threshold achieves (set as an attacker without the target's
  membership would, `evaluate.thresholds`), means over the targets: the mean of per-target PPVs
  would count a target without any member call as PPV 1. Where that threshold calls no record in
  any target, PPV is undefined, and the verdict says so instead of quoting PPV and chance.
- Exposed training records: called member, under that attack's shadow threshold at FPR 0.1%, by
  a target that trained on them and by no target that did not (`record_vulnerability`'s highly
  vulnerable records); exposure = the share of the targets that trained on a record which
  caught it. Chance alone exposes some: an attack with no signal calls each record member with
  the achieved FPR f in every target, so record n is exposed with probability
  (1 − (1 − f)^members_n) · (1 − f)^non-members_n, and by most of its member targets with
  Pr[Binomial(members_n, f) > members_n / 2] · (1 − f)^non-members_n; their sums are the counts
  quoted beside. Records leak when either count found is over twice chance's, plus 2.
- The targets' train/test accuracy gap: accuracy on their members against accuracy on their
  non-members (the pool records they did not train on: the test accuracy everywhere in a report).
- The smallest FPR the run can measure: 1 / the fewest non-members a target has; a TPR at a
  smaller FPR rests on no false positive at all.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import binom

from miakit.evaluate.metric_key import MetricKey
from miakit.evaluate.roc import roc_curve
from miakit.evaluate.thresholds import ppv
from miakit.evaluate.vulnerability import FLAG_FPR, record_vulnerability
from miakit.report.runs import RunData, language_model_run, model_arch

#: The FPRs the verdict quotes TPR at, when the run evaluated them.
VERDICT_FPRS = (0.01, 0.001)
#: The priors (share of members among the records an attacker tests) PPV is quoted at.
VERDICT_PRIORS = (0.01, 0.1)
#: How many of the most exposed records the verdict shows.
SHOWN_RECORDS = 8


@dataclass(frozen=True)
class Figure:
    """A mean over targets with its 95% interval (None where not computed)."""

    mean: float
    low: float | None = None
    high: float | None = None

    @classmethod
    def of(cls, figures: dict, name: str) -> Figure | None:
        f = figures.get(name)
        if f is None or f.get("mean") is None or np.isnan(f["mean"]):
            return None
        return cls(float(f["mean"]), f.get("ci_low"), f.get("ci_high"))

    def percent(self) -> str:
        interval = "" if self.low is None else f" [{100 * self.low:.1f}, {100 * self.high:.1f}]"
        return f"{100 * self.mean:.1f}%{interval}"

    def decimal(self) -> str:
        interval = "" if self.low is None else f" [{self.low:.3f}, {self.high:.3f}]"
        return f"{self.mean:.3f}{interval}"


@dataclass(frozen=True)
class Verdict:
    """The verdict of an evaluated run (module docstring): `sentences()` in plain words, and the
    numbers behind them as fields (rates as fractions; Figure: mean over targets with its 95%
    interval)."""

    attack: str
    auc: Figure | None
    tpr: dict[float, Figure | None]  # FPR → TPR
    ppv_fpr: float  # the FPR of the shadow threshold PPV and exposure are quoted at
    ppv: dict[float, float | None]  # prior → PPV of the shadow-calibrated threshold
    records: int  # evaluated records
    exposed: int | None  # None with one target: shadow thresholds need two
    exposed_by_chance: float  # expected count for an attack without signal
    exposed_in_most: int  # exposed records caught by more than half their member targets
    in_most_by_chance: float  # expected count of those for an attack without signal
    chance_fpr: float  # the FPR that attack calls members at: the threshold's achieved FPR
    top: pd.DataFrame  # the most exposed: row, record, label, tp, n_member, exposure
    train_accuracy: float | None
    test_accuracy: float | None
    smallest_fpr: float
    next_step: str
    #: whether the shadow threshold at ppv_fpr calls no record member in any target (PPV is
    #: then undefined, and nothing is exposed)
    calls_none: bool = False
    #: attack → the lowest FPR at which it first catches a member (mean over targets), for the
    #: attacks that catch no member at FPR ppv_fpr in any target
    silent: dict[str, float] = field(default_factory=dict)
    #: whether every attack is silent at FPR ppv_fpr: none separates members there
    none_separate: bool = False

    @property
    def records_leak(self) -> bool:
        return records_leak(
            self.exposed, self.exposed_by_chance, self.exposed_in_most, self.in_most_by_chance
        )

    @property
    def gap(self) -> float | None:
        if self.train_accuracy is None or self.test_accuracy is None:
            return None
        return self.train_accuracy - self.test_accuracy

    def sentences(self) -> list[str]:
        """The verdict in plain sentences (no markup)."""
        x = f"FPR {100 * self.ppv_fpr:g}%"
        auc = f" (AUC {self.auc.decimal()})" if self.auc is not None else ""
        quoted = self.tpr.get(self.ppv_fpr)
        if self.none_separate:
            names = list(self.silent)
            facts = "; ".join(
                f
                for f in (
                    f"TPR {quoted.percent()}" if quoted is not None else "",
                    f"AUC {self.auc.decimal()}" if self.auc is not None else "",
                )
                if f
            )
            facts = f" ({facts})" if facts else ""
            first = (
                f"first catches members at FPR {_share(self.silent[self.attack])} (mean over "
                "targets)"
            )
            first += "".join(
                f"; at FPR {100 * fpr:g}% it catches {f.percent()} of members"
                for fpr, f in self.tpr.items()
                if f is not None and fpr != self.ppv_fpr
            )
            if len(names) == 1:
                line = (
                    f"No attack separates members at {x}: {self.attack} catches no member there "
                    f"in any target{facts}; it {first}."
                )
            else:
                line = (
                    f"No attack separates members at {x}: none of {_listed(names, 'or')} "
                    f"catches a member there in any target. The best, {self.attack}{facts}, "
                    f"{first}."
                )
            lines = [line]
        else:
            tprs = ", ".join(
                f"{f.percent()} of members at FPR {100 * fpr:g}%"
                for fpr, f in self.tpr.items()
                if f is not None
            )
            if tprs:
                lines = [f"Strongest attack: {self.attack}, which catches {tprs}{auc}."]
            else:
                at = " or ".join(f"FPR {100 * fpr:g}%" for fpr in self.tpr)
                lines = [
                    f"Strongest attack: {self.attack}{auc}. No TPR at {at} can be read on this "
                    "run: a target needs at least 1/FPR non-members to measure one (README, "
                    "Resolution)."
                ]
            if self.silent:
                firsts = ", ".join(f"{a} at FPR {_share(f)}" for a, f in self.silent.items())
                lines.append(
                    f"{_listed(list(self.silent))} catch{'es' if len(self.silent) == 1 else ''} "
                    f"no member at {x} in any target; each first catches members at a higher "
                    f"FPR (mean over targets): {firsts}."
                )
        ppvs = [
            f"{100 * f:.1f}% of the time when {100 * p:g}% of the records tested are members"
            for p, f in self.ppv.items()
            if f is not None
        ]
        if self.calls_none:
            lines.append(
                f"With its threshold set on shadow models for {x}, it calls no record member in "
                "any target: the precision of its member calls (PPV) is undefined, and no "
                "training record is exposed at that FPR."
            )
        elif ppvs:
            lines.append(
                f"With its threshold set on shadow models for {x}, its "
                f"member calls are right (PPV) {' and '.join(ppvs)}."
            )
        if self.exposed is None:
            lines.append("Which records are exposed needs two target models or more.")
        elif not self.calls_none:
            by_most = f"{self.in_most_by_chance:,.0f}" if self.in_most_by_chance >= 0.5 else "none"
            if beyond_chance(self.exposed_in_most, self.in_most_by_chance):
                conclusion = (
                    f"the {self.exposed_in_most:,} caught by most of their targets are not "
                    "chance, so those records leak."
                )
            elif self.records_leak:
                conclusion = "more than chance, so these records leak."
            else:
                conclusion = "these counts are no evidence that particular records leak."
            lines.append(
                f"{self.exposed:,} of {self.records:,} training records are exposed (called "
                "member by a target that trained on them and by none that did not, at FPR "
                f"{100 * self.ppv_fpr:g}%), {self.exposed_in_most:,} of them by most of the "
                "targets that trained on them. An attack without signal, calling members as "
                f"often as this threshold does (FPR {100 * self.chance_fpr:.2g}%), would expose "
                f"about {self.exposed_by_chance:,.0f}, {by_most} of them by most: {conclusion}"
            )
        if self.gap is not None:
            lines.append(
                f"Train accuracy {100 * self.train_accuracy:.1f}%, test accuracy (records the "
                f"target did not train on) {100 * self.test_accuracy:.1f}%: a gap of "
                f"{100 * self.gap:.1f} points."
            )
        lines.append(
            f"The smallest FPR these data can measure is {100 * self.smallest_fpr:.2g}% (1 / "
            f"{round(1 / self.smallest_fpr)} non-members per target); figures at lower FPRs "
            "rest on no false positive."
        )
        lines.append(f"Next step: {self.next_step}")
        return lines


def _listed(names: list[str], last: str = "and") -> str:
    """["a", "b", "c"] → "a, b and c"."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} {last} {names[-1]}"


def _share(fpr: float) -> str:
    """An FPR as a percentage with two significant digits at least (0.93 → "93%")."""
    return f"{100 * fpr:.3g}%"


def strongest_attack(metrics: dict[str, dict], fprs: list[float]) -> str:
    """The attack with the highest mean TPR at FPR 0.1% (the smallest evaluated FPR when 0.1%
    is not), ties broken by TPR at 1%, then AUC, then the run's order."""
    primary = FLAG_FPR if FLAG_FPR in fprs else min(fprs)
    order = [primary, *(x for x in VERDICT_FPRS if x != primary and x in fprs)]

    def key(attack: str) -> tuple[float, ...]:
        figures = metrics[attack]
        values = [figures.get(str(MetricKey("tpr", fpr=x)), {}).get("mean") for x in order]
        values.append(figures.get("auc", {}).get("mean"))
        return tuple(-np.inf if v is None or np.isnan(v) else v for v in values)

    return max(metrics, key=key)  # max keeps the first of equals


def exposed_by_chance(keep: np.ndarray, fpr: float, most: bool = False) -> float:
    """The expected count of exposed records (TP > 0, FP = 0; with `most`, TP over half the
    record's member targets) for an attack without signal that calls each record member with
    probability `fpr` in every target (keep: the targets' [T, N] membership): TP is then
    Binomial(members, fpr), independent of FP = 0, whose probability is (1 − fpr)^non-members."""
    members = keep.sum(axis=0)
    non_members = keep.shape[0] - members
    caught = binom.sf(members // 2, members, fpr) if most else 1 - (1 - fpr) ** members
    return float(np.sum(caught * (1 - fpr) ** non_members))


def beyond_chance(found: int, by_chance: float) -> bool:
    """More records than an attack without signal would plausibly expose: over twice its
    expected count `by_chance`, plus 2."""
    return found > 2 * by_chance + 2


def records_leak(
    exposed: int | None, by_chance: float, in_most: int, in_most_by_chance: float
) -> bool:
    """Whether the `exposed` records (None: not known), or the `in_most` of them caught by most
    of their member targets, are `beyond_chance`."""
    if exposed is None:
        return False
    return beyond_chance(exposed, by_chance) or beyond_chance(in_most, in_most_by_chance)


def next_step(
    attack: str,
    tpr: Figure | None,
    fpr: float,
    leaks_records: bool,
    gap: float | None,
    run: str,
    estimator: bool = False,
    text: bool = False,
    auc: Figure | None = None,
) -> str:
    """What to do about it: defend and compare when the model leaks (TPR at `fpr` above `fpr`
    beyond its interval, more exposed records than chance, or, where the data cannot measure a
    TPR at `fpr` (tpr None), an AUC above 0.5 beyond its interval), else audit harder. For an
    `estimator` (model.arch sklearn), which DP-SGD cannot train, regularize it instead."""
    beats_chance = tpr is not None and tpr.low is not None and tpr.low > fpr
    above_half = tpr is None and auc is not None and auc.low is not None and auc.low > 0.5
    leaks = beats_chance or leaks_records or above_half
    if leaks:
        overfit = (
            f" It overfits ({100 * gap:.0f}-point gap): regularize or stop earlier."
            if gap is not None and gap > 0.05
            else ""
        )
        if text:
            return (
                "train fewer epochs, or deduplicate or drop the records that leak most (below), "
                "and audit again (miakit has no defence for language models yet), then "
                f"`miakit compare {run} runs/retrained` to weigh the privacy gained against the "
                "loss."
            )
        if estimator:
            return (
                "regularize the estimator and audit again (e.g. a larger min_samples_leaf or a "
                "smaller max_depth for trees, a smaller C for linear models; miakit's DP-SGD "
                f"trains torch models only), then `miakit compare {run} runs/regularized` to "
                f"weigh the privacy gained against the accuracy lost.{overfit}"
            )
        return (
            "train with a defence and audit again, e.g. `miakit audit --config "
            "configs/dpsgd_digits.yaml --out runs/dpsgd` (DP-SGD; on other data "
            "`--set defences.dp.enabled=true`), then `miakit compare "
            f"{run} runs/dpsgd` to weigh the privacy gained against the accuracy lost.{overfit}"
        )
    if tpr is None:
        return (
            "these data measure no TPR at a low FPR, and no attack's AUC is above chance beyond "
            "its interval; audit with more records or more target models."
        )
    return (
        f"no attack, {attack} included, does better than chance at the low FPRs these data can "
        "measure; to read lower FPRs, audit with more records or more target models."
    )


def operating_fpr(figures: dict, fprs: list[float]) -> float:
    """The FPR the verdict's record-level and PPV sentences use: 0.1% where the data resolve it
    (at least 1,000 non-members per target), else the smallest evaluated FPR they resolve."""
    resolved = [
        x for x in fprs if "not_measurable" not in figures.get(str(MetricKey("tpr", fpr=x)), {})
    ]
    if FLAG_FPR in resolved:
        return FLAG_FPR
    return min(resolved) if resolved else max(fprs)


def verdict(data: RunData) -> Verdict:
    """The verdict of an evaluated run (`report.runs.load_run`)."""
    attack = strongest_attack(data.metrics, data.fprs)
    figures = data.metrics[attack]
    x = operating_fpr(figures, data.fprs)
    if len(data.targets) >= 2:
        table = record_vulnerability(data.scores[attack], data.keep, data.targets, x)
        exposed = table[table["highly_vulnerable"]]
    else:  # shadow thresholds need another target: no record-level verdict
        exposed = pd.DataFrame(columns=["record", "tp", "n_member", "rank"])
    top = exposed.sort_values("rank").head(SHOWN_RECORDS).rename(columns={"record": "row"})
    top = top.assign(
        record=top["row"] if data.evaluated is None else data.evaluated[top["row"]],
        label=data.labels[top["row"]],
        exposure=top["tp"] / top["n_member"],
    )[["row", "record", "label", "tp", "n_member", "exposure"]]
    non_members = (~data.keep[data.targets]).sum(axis=1)
    train_accuracy = test_accuracy = None
    if data.calibration is not None:
        train_accuracy = float(np.nanmean(data.calibration["train_accuracy"]))
        test_accuracy = float(np.nanmean(data.calibration["test_accuracy"]))
    tpr = {
        f: Figure.of(figures, str(MetricKey("tpr", fpr=f))) for f in VERDICT_FPRS if f in data.fprs
    }
    gap = None if train_accuracy is None else train_accuracy - test_accuracy
    shadow_tpr = Figure.of(figures, str(MetricKey("shadow_tpr", fpr=x)))
    shadow_fpr = Figure.of(figures, str(MetricKey("shadow_fpr", fpr=x)))
    ppvs: dict[float, float | None] = dict.fromkeys(VERDICT_PRIORS)
    if shadow_tpr is not None and shadow_fpr is not None:
        ppvs = {p: ppv(shadow_tpr.mean, shadow_fpr.mean, p) for p in VERDICT_PRIORS}
    calls_none = shadow_tpr is not None and shadow_fpr is not None
    calls_none = calls_none and shadow_tpr.mean == 0 and shadow_fpr.mean == 0
    silent = silent_attacks(data, x)
    chance_fpr = x if shadow_fpr is None else shadow_fpr.mean
    chance = exposed_by_chance(data.keep[data.targets], chance_fpr)
    in_most_by_chance = exposed_by_chance(data.keep[data.targets], chance_fpr, most=True)
    count = len(exposed) if len(data.targets) >= 2 else None
    in_most = int((exposed["tp"] > exposed["n_member"] / 2).sum())
    return Verdict(
        attack=attack,
        auc=Figure.of(figures, "auc"),
        tpr=tpr,
        ppv_fpr=x,
        ppv=ppvs,
        records=data.keep.shape[1],
        exposed=count,
        exposed_by_chance=chance,
        exposed_in_most=in_most,
        in_most_by_chance=in_most_by_chance,
        chance_fpr=chance_fpr,
        top=top.reset_index(drop=True),
        train_accuracy=train_accuracy,
        test_accuracy=test_accuracy,
        smallest_fpr=1.0 / int(non_members.min()),
        next_step=next_step(
            attack,
            Figure.of(figures, str(MetricKey("tpr", fpr=x))),
            x,
            records_leak(count, chance, in_most, in_most_by_chance),
            gap,
            str(data.run.root),
            estimator=_is_estimator_run(data.config_text),
            text=language_model_run(data.config_text),
            auc=Figure.of(figures, "auc"),
        ),
        calls_none=calls_none,
        silent=silent,
        none_separate=len(silent) == len(data.metrics),
    )


def silent_attacks(data: RunData, fpr: float) -> dict[str, float]:
    """attack → the lowest FPR at which it first catches a member (the first vertex of its ROC
    with a true positive, mean over the targets), for the attacks whose TPR at `fpr` is 0 in
    every target (a mean of 0)."""
    silent = {}
    for attack, figures in data.metrics.items():
        tpr = figures.get(str(MetricKey("tpr", fpr=fpr)), {}).get("mean")
        if tpr == 0:
            scores = data.scores[attack]
            rocs = [roc_curve(scores[i], data.keep[t]) for i, t in enumerate(data.targets)]
            silent[attack] = float(np.mean([r.fpr[r.first_catch()] for r in rocs]))
    return silent


def _is_estimator_run(config_text: str) -> bool:
    """Whether run.yaml's model is a scikit-learn estimator (model.arch sklearn)."""
    return model_arch(config_text) == "sklearn"
