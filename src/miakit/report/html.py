"""report.html: one self-contained page (figures embedded as base64 PNG, no scripts, no network)
that a person reads to judge an audit: how exposed the model is, under realistic thresholds and
priors, which records are exposed, and how the run was made."""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

import miakit
from miakit.errors import MiakitError
from miakit.evaluate.calibration import reliability
from miakit.evaluate.metric_key import MetricKey
from miakit.evaluate.metrics import figure_words
from miakit.evaluate.tables import evaluation_tables
from miakit.evaluate.thresholds import ppv
from miakit.evaluate.vulnerability import flagged_members
from miakit.report.dp_audit import dp_audit_section
from miakit.report.figures import (
    histogram_figure,
    png_base64,
    ppv_figure,
    reliability_figure,
    roc_figure,
    scatter_figure,
)
from miakit.report.runs import RunData, load_run
from miakit.report.training import model_table, privacy_utility
from miakit.report.verdict import VERDICT_PRIORS, Verdict, operating_fpr, verdict
from miakit.signals import softmax
from miakit.store import save_text

#: The LiRA whose scores LT-IQR is plotted against: the first of these the run has.
LIRA = ("lira-online", "lira-offline")
TOP_RECORDS = 24
#: How many features of a tabular record the verdict shows.
FEATURES_SHOWN = 12

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222;
       padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; font-size: .85em; margin: .5em 0; }
th, td { border: 1px solid #ddd; padding: .3em .6em; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; } pre { background: #f6f6f6; padding: 1em; overflow-x: auto; font-size: .8em; }
.note { color: #555; font-size: .9em; }
.records { display: flex; flex-wrap: wrap; gap: .6em; }
.records figure { margin: 0; text-align: center; font-size: .75em; }
.records img { image-rendering: pixelated; border: 2px solid #c0392b; }
.verdict { background: #fff3cd; border: 1px solid #e0c36a; border-radius: 6px; padding: .6em 1.2em; }
.verdict p { margin: .45em 0; } .verdict table { background: #fff; }
tr.strongest td { background: #fff3cd; font-weight: 600; }
img.roc { border: 1px solid #2c7be5; }
"""


def figure_text(figure: dict | None, fmt=None) -> str:
    """A metrics.json figure's mean as text: "not measurable" where the data cannot resolve it,
    "undefined" where it is a ratio over 0 (`metrics.figure_words`)."""
    return figure_words(figure) or (fmt or pct)(figure["mean"])


def pct(value: float | None) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{100 * value:.2f}%"


def decimal(value: float) -> str:
    return f"{value:.3f}"


def figure_tag(fig, alt: str, css: str = "") -> str:
    cls = f' class="{css}"' if css else ""
    return f'<img{cls} alt="{html.escape(alt)}" src="data:image/png;base64,{png_base64(fig)}">'


def table_tag(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="–", border=0)


def rows_table(rows: list[dict[str, str]], highlight: int | None = None) -> str:
    """An HTML table of text cells (escaped), row `highlight` marked as the strongest."""
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join(
        ('<tr class="strongest">' if i == highlight else "<tr>")
        + "".join(f"<td>{html.escape(v)}</td>" for v in row.values())
        + "</tr>"
        for i, row in enumerate(rows)
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def flag_fpr(data: RunData) -> float:
    """The FPR record-level and shadow-threshold figures use, the verdict's: 0.1% where the data
    resolve it, else the smallest evaluated FPR they resolve."""
    return operating_fpr(next(iter(data.metrics.values())), data.fprs)


def fpr_label(x: float) -> str:
    return f"{100 * x:g}%"


#: characters of a text record the report shows
TEXT_SHOWN = 80


def verdict_section(
    data: RunData,
    found: Verdict,
    images: np.ndarray | None,
    features: np.ndarray | None,
    texts: Sequence[str] | None = None,
) -> str:
    """The verdict's sentences, then its most exposed records: pictures where the records are
    pictures, else their feature rows or text snippets (escaped); each with its label and
    exposure."""
    sentences = "".join(f"<p>{html.escape(line)}</p>" for line in found.sentences())
    top = found.top
    if top.empty:
        shown = ""
    elif images is not None:
        check_records(images, data, "images")
        cells = "".join(
            f'<figure><img alt="record {r.record}" '
            f'src="data:image/png;base64,{image_png_base64(images[r.row])}">'
            f"<figcaption>#{r.record}, label {r.label}<br>caught by {r.tp} of {r.n_member}"
            "</figcaption></figure>"
            for r in top.itertuples()
        )
        shown = f'<div class="records">{cells}</div>'
    else:
        rows = []
        if features is not None:
            check_records(features, data, "feature rows")
        for r in top.itertuples():
            row = {
                "record": str(r.record),
                "label": str(r.label),
                "exposure": f"caught by {r.tp} of {r.n_member} targets",
            }
            if features is not None:
                values = features[r.row]
                shown_values = ", ".join(f"{v:.3g}" for v in values[:FEATURES_SHOWN])
                more = f" … ({len(values)} features)" if len(values) > FEATURES_SHOWN else ""
                row["features"] = shown_values + more
            if texts is not None:
                text = texts[r.row]
                row["text"] = text[:TEXT_SHOWN] + (" …" if len(text) > TEXT_SHOWN else "")
            rows.append(row)
        shown = rows_table(rows)
    heading = (
        f"<p><b>The most exposed training records</b> (by {html.escape(found.attack)}; caught "
        "by k of n: called member by k of the n targets that trained on it, and by no target "
        "that did not):</p>"
        if not top.empty
        else ""
    )
    return f'<div class="verdict">{sentences}{heading}{shown}</div>'


def check_records(records: np.ndarray, data: RunData, what: str) -> None:
    if len(records) != data.keep.shape[1]:
        raise MiakitError(f"{len(records)} {what} given for a pool of {data.keep.shape[1]} records")


def measurable(figure: dict | None) -> bool:
    return figure is not None and "not_measurable" not in figure


def skipped_note(data: RunData) -> str:
    """The attacks not scored on this run's signals, each with why (empty when none)."""
    if not data.skipped:
        return ""
    items = "".join(
        f"<li><b>{html.escape(a)}</b>: {html.escape(r)}</li>" for a, r in data.skipped.items()
    )
    return f'<p class="note">Skipped attacks (no scores on these outputs):</p><ul>{items}</ul>'


def summary_section(data: RunData, found: Verdict) -> str:
    x = flag_fpr(data)
    fprs = sorted(data.fprs, reverse=True)  # 1% first, as the CLI table
    rows = []
    reasons: set[str] = set()
    for attack, figures in data.metrics.items():

        def cell(name: str, figures: dict = figures, fmt=pct) -> str:
            f = figures.get(name)
            words = figure_words(f)
            if words is not None:
                reasons.update(f[k] for k in ("not_measurable", "undefined") if k in (f or {}))
                return words
            ci = f" [{fmt(f['ci_low'])}, {fmt(f['ci_high'])}]" if "ci_low" in f else ""
            return fmt(f["mean"]) + ci

        warning = data.warnings.get(attack)
        row = {
            "attack": attack + (" (strongest)" if attack == found.attack else ""),
            "AUC": cell("auc", fmt=decimal) + (f" ⚠ {warning}" if warning else ""),
        }
        for fpr in fprs:
            fp = figures[str(MetricKey("fp", fpr=fpr))]
            count = f", {fp['mean']:.1f} false positives" if measurable(fp) else ""
            row[f"TPR at FPR {fpr_label(fpr)}"] = cell(str(MetricKey("tpr", fpr=fpr))) + count
        row["balanced accuracy"] = cell("balanced_accuracy", fmt=decimal)
        shadow_keys = [str(MetricKey(f"shadow_{k}", fpr=x)) for k in ("tpr", "fpr")]
        row[f"shadow threshold for FPR {fpr_label(x)}: TPR / FPR achieved"] = " / ".join(
            cell(k) for k in shadow_keys
        )
        shadow_tpr, shadow_fpr = (figures.get(k) for k in shadow_keys)
        for prior in VERDICT_PRIORS:
            value = (
                ppv(shadow_tpr["mean"], shadow_fpr["mean"], prior)
                if measurable(shadow_tpr) and measurable(shadow_fpr)
                else None
            )
            row[f"PPV at {100 * prior:g}% members"] = (
                "–"
                if value is None
                else "undefined (no member call)"
                if np.isnan(value)
                else pct(value)
            )
        rows.append(row)
    strongest = list(data.metrics).index(found.attack)
    intervals = html.escape(data.interval_note or "95% interval")
    unmeasured = "".join(f" {html.escape(r[0].upper() + r[1:])}." for r in sorted(reasons))
    return (
        rows_table(rows, highlight=strongest)
        + skipped_note(data)
        + (
            f'<p class="note">Mean over {len(data.targets)} target models; brackets: {intervals}.'
            f"{unmeasured} False positives: the mean count of non-members behind the TPR. Shadow "
            "threshold: the median of the other targets' thresholds, as an attacker without the "
            "target's membership would set it, and the TPR and FPR it achieves on the target. PPV: "
            "the share of member calls (at that threshold, from those mean TPR and FPR) that are "
            "right when 1% or 10% of the records an attacker tests are members.</p>"
        )
    )


def members_matrix(data: RunData) -> np.ndarray:
    return data.keep[data.targets]


def roc_section(data: RunData, found: Verdict) -> str:
    members = members_matrix(data).ravel()
    curves = {a: (s.ravel(), members) for a, s in data.scores.items()}
    fig = roc_figure(curves, floor=1 / data.keep.shape[1], strongest=found.attack)
    return figure_tag(fig, "ROC curves", css="roc") + (
        '<p class="note">All targets pooled; the strongest attack drawn thickest. Attacks '
        "that rank records the same way have the same curve: the legend names them "
        "together.</p>"
    )


def ppv_section(data: RunData, tables: dict[str, pd.DataFrame]) -> str:
    if "thresholds" not in tables:
        return '<p class="note">Needs two targets or more.</p>'
    figures = next(iter(data.metrics.values()))
    fprs = sorted(data.fprs, reverse=True)
    shown = [x for x in fprs if measurable(figures.get(str(MetricKey("tpr", fpr=x))))]
    skipped = [x for x in fprs if x not in shown]
    note = (
        '<p class="note">Not shown, not measurable with this many non-members per target: FPR '
        + ", ".join(f"{x:g}" for x in skipped)
        + ".</p>"
        if skipped
        else ""
    )
    panels = "".join(figure_tag(ppv_figure(tables["thresholds"], x), "PPV") for x in shown)
    return panels + note


def histogram_section(data: RunData) -> str:
    members = members_matrix(data)
    return figure_tag(histogram_figure(data.scores, members), "score histograms") + (
        '<p class="note">Each attack on the scale that spreads its scores: LOSS as the '
        "log-odds φ = log p_y − log(1 − p_y) its loss implies; heavy-tailed scores (most "
        "records near the median, a few far out) as asinh((score − median) / IQR), linear near "
        "the median and logarithmic in the tails.</p>"
    )


def ranking_section(data: RunData, tables: dict[str, pd.DataFrame]) -> str | None:
    """LT-IQR against LiRA on the first target, and precision@k of the cheap rankings; None
    when LT-IQR did not run."""
    if "lt-iqr" not in data.scores:
        return None
    parts = []
    lira = next((a for a in LIRA if a in data.scores), None)
    if lira is not None:
        members = data.keep[0]
        x, y = data.scores["lt-iqr"][0], data.scores[lira][0]
        flagged = flagged_members(y, members, flag_fpr(data))[members]
        title = f"target 0: LT-IQR against {lira}, members only"
        parts.append(
            figure_tag(
                scatter_figure(x[members], y[members], flagged, "LT-IQR", lira, title), title
            )
        )
    if "precision_at_k" in tables:
        means = (
            tables["precision_at_k"]
            .groupby(["ranking", "reference", "fraction"], sort=False)[["precision", "recall"]]
            .mean()
            .unstack("fraction")
        )
        means.columns = [f"{kind} in the top {100 * f:g}%" for kind, f in means.columns]
        means = means.reset_index().rename(
            columns={"ranking": "cheap ranking", "reference": "flagged by"}
        )
        parts.append(
            table_tag(means)
            + '<p class="note">LT-IQR needs no reference model: it ranks a target\'s members '
            "by the spread of their loss during training. Precision in the top k%: of the k% of "
            "the target's members it ranks riskiest, the share that the attack named under "
            f"“flagged by” calls member at FPR {fpr_label(flag_fpr(data))}; recall: the share of "
            "those flagged members found in that top k%. Mean over targets.</p>"
        )
    return "".join(parts)


def image_png_base64(image: np.ndarray, size: int = 72) -> str:
    """A uint8 record image ([H, W, C] or [H, W]) enlarged without smoothing, as base64 PNG."""
    picture = Image.fromarray(image.squeeze())
    scale = max(1, size // max(picture.size))
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def records_grid(images: np.ndarray, top: pd.DataFrame) -> str:
    """The records' images in rank order, each captioned with its pool index, label, TP and FP.
    `images` are the evaluated records' (top's `row` indexes them)."""
    cells = "".join(
        f'<figure><img alt="record {r.record}" '
        f'src="data:image/png;base64,{image_png_base64(images[r.row])}">'
        f"<figcaption>#{r.record}, label {r.label}<br>caught {r.tp}, wrongly {r.fp}"
        "</figcaption></figure>"
        for r in top.itertuples()
    )
    return f'<div class="records">{cells}</div>'


#: The vulnerability table's columns, in words.
VULNERABILITY_COLUMNS = {
    "rank": "rank",
    "record": "record",
    "label": "label",
    "n_member": "targets that trained on it",
    "tp": "of those, calling it member",
    "fp": "other targets calling it member",
    "mean_member_score": "mean score where a member",
    "highly_vulnerable": "exposed",
}


def vulnerable_section(
    data: RunData, tables: dict[str, pd.DataFrame], images: np.ndarray | None, attack: str
) -> str:
    if "thresholds" not in tables:
        return '<p class="note">Needs two targets or more.</p>'
    table = tables[f"vulnerability_{attack}"]
    top = table.sort_values("rank").head(TOP_RECORDS).rename(columns={"record": "row"})
    top = top.assign(
        label=data.labels[top["row"]],
        record=top["row"] if data.evaluated is None else data.evaluated[top["row"]],
    )
    parts = [
        f"<p>By {attack}, the strongest attack, under its shadow-calibrated threshold at FPR "
        f"{fpr_label(flag_fpr(data))}. Record: the index in the pool; exposed: called member by "
        "a target that trained on it and by none that did not.</p>"
    ]
    if images is not None:
        check_records(images, data, "images")
        parts.append(records_grid(images, top))
    shown = top[list(VULNERABILITY_COLUMNS)].rename(columns=VULNERABILITY_COLUMNS)
    shown["exposed"] = shown["exposed"].map({True: "yes", False: "no"})
    return "".join(parts) + table_tag(shown)


def calibration_section(data: RunData) -> str:
    table, logits = data.calibration, data.target_logits()
    if table is None and logits is not None:  # a causal LM (`RunData.calibration`)
        return '<p class="note">Language models: no classes to calibrate.</p>'
    if table is None or logits is None:
        return '<p class="note">No logits.npy for the targets: calibration needs them.</p>'
    probs = softmax(np.asarray(logits[0][:, 0, :], dtype=np.float64))
    members = data.keep[0]
    diagrams = {
        "target 0, members": reliability(probs[members], data.labels[members]),
        "target 0, non-members": reliability(probs[~members], data.labels[~members]),
    }
    means = table.drop(columns="target").mean().to_frame("mean over targets").T
    means = means.rename(columns=CALIBRATION_COLUMNS).reset_index(names="")
    return (
        figure_tag(reliability_figure(diagrams), "reliability diagram")
        + table_tag(means)
        + f'<p class="note">{TEST_ACCURACY}</p>'
    )


#: What "test accuracy" means everywhere in a report and a comparison.
TEST_ACCURACY = (
    "Train accuracy: on the target's members (the pool records it trained on); test accuracy: "
    "on its non-members (the pool records it did not train on). The data set's own test split, "
    "where it has one, gives the test-split accuracy."
)

#: The calibration table's columns, in words.
CALIBRATION_COLUMNS = {
    "train_accuracy": "train accuracy",
    "test_accuracy": "test accuracy",
    "train_ece": "ECE on members",
    "test_ece": "ECE on non-members",
    "train_overconfidence": "overconfidence on members",
    "test_overconfidence": "overconfidence on non-members",
}

#: The per-model table's columns, in words (meta.json's names).
MODEL_COLUMNS = {
    "train_seconds": "training seconds",
    "test_accuracy": "test-split accuracy",
    "accuracy_in": "train accuracy",
    "accuracy_out": "test accuracy",
    "epsilon": "ε",
    "delta": "δ",
    "noise_multiplier": "noise multiplier",
    "laplace_prior_precision": "Laplace prior precision",
}


def training_section(data: RunData) -> str:
    """Defences and utility of the targets, and per-model training facts from meta.json."""
    models = model_table(data)
    if models.empty:
        return '<p class="note">No meta.json: the models were brought in.</p>'
    figures = privacy_utility(data, models)
    facts = {
        "defences": figures["defences"],
        "ε of DP-SGD (largest over the targets)": (
            "–" if figures["epsilon"] is None else f"{figures['epsilon']:.3g}"
        ),
        "train / test accuracy (targets' mean)": (
            f"{pct(figures.get('pool_train_accuracy'))} / {pct(figures.get('pool_test_accuracy'))}"
        ),
        "test-split accuracy (targets' mean)": pct(figures["test_accuracy"]),
        "ECE on non-members": (
            "–" if "pool_test_ece" not in figures else decimal(figures["pool_test_ece"])
        ),
    }
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in facts.items()
    )
    shown = models.dropna(axis=1, how="all").head(TOP_RECORDS).rename(columns=MODEL_COLUMNS)
    more = len(models) - len(shown)
    note = f"First {len(shown)} of {len(models)} models. " if more else ""
    return (
        f"<table>{rows}</table>" + table_tag(shown) + f'<p class="note">{note}{TEST_ACCURACY}</p>'
    )


def ood_section(data: RunData) -> str:
    """Per attack and out-of-distribution set, the share of its records called member at the
    threshold that gives FPR x on the target's own non-members (mean over targets)."""
    rows: dict[tuple[str, str], dict[float, str]] = {}
    for attack, figures in data.metrics.items():
        for name, f in figures.items():
            key = MetricKey.parse(name)
            if key.name == "ood_fpr" and key.set is not None and key.fpr is not None:
                rows.setdefault((attack, key.set), {})[key.fpr] = figure_text(f)
    fprs = sorted({x for row in rows.values() for x in row}, reverse=True)
    columns = {x: f"OOD FPR at FPR {x:g}" for x in fprs}
    if not rows:
        return (
            '<p class="note">Not run: list out-of-distribution sets under evaluate.ood (e.g. '
            "<code>{kind: noise}</code>, <code>{kind: dataset, source: fashion-mnist}</code>).</p>"
        )
    table = pd.DataFrame(
        [
            {"attack": a, "set": o, **{label: v.get(x, "–") for x, label in columns.items()}}
            for (a, o), v in rows.items()
        ]
    )
    return table_tag(table) + (
        '<p class="note">Records no model trained on, far from the pool. A sound attack calls at '
        "most the share x of them member at the threshold that gives FPR x on the target's own "
        "non-members; more means it flags what is unusual rather than what was trained on.</p>"
    )


def metadata_section(data: RunData) -> str:
    pool = {k: v for k, v in data.pool.items() if k != "targets"}
    facts = {
        "run directory": str(data.run.root.resolve()),
        "models": data.keep.shape[0],
        "targets": len(data.targets),
        "records": data.keep.shape[1],
        **{f"pool {k}": v for k, v in pool.items()},
        "miakit": miakit.__version__,  # also when run from a source tree
        "report written": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in facts.items()
    )
    config = html.escape(data.config_text or "(no run.yaml: models brought in)")
    return f"<table>{rows}</table><h3>Config (run.yaml)</h3><pre>{config}</pre>"


def single_point_section(folder: Path) -> str:
    """A with/without experiment's ranking (summary.json) with its loss histograms embedded."""
    try:
        summary = json.loads((folder / "summary.json").read_text())
        records = pd.DataFrame(summary["records"])
        alpha = summary["config"]["alpha"]
    except (OSError, ValueError, KeyError) as exc:
        raise MiakitError(
            f"{folder} holds no readable single-point summary.json ({exc}); run "
            f"`miakit single-point --out {folder}` first"
        ) from exc
    pictures = "".join(
        f'<figure><img alt="record {i}" src="data:image/png;base64,'
        f'{base64.b64encode(path.read_bytes()).decode("ascii")}"></figure>'
        for i in records["index"]
        if (path := folder / f"hist_{i}.png").is_file()
    )
    columns = {c: name for c, name in SINGLE_POINT_COLUMNS.items() if c in records}
    return (
        f"<p>{html.escape(str(folder))}: {len(records)} records ranked by the power of the "
        f"with/without test at α = {alpha:g}: the share of models trained with the record "
        "whose loss on it falls below the threshold that only α of the models trained "
        "without it reach.</p>"
        + table_tag(records[list(columns)].rename(columns=columns))
        + f'<div class="records">{pictures}</div>'
    )


#: The single-point summary's columns shown, in this order, in words.
SINGLE_POINT_COLUMNS = {
    "rank": "rank",
    "index": "record",
    "label": "label",
    "power_empirical": "power",
    "power_ci_low": "power, 95% low",
    "power_ci_high": "power, 95% high",
    "power_gaussian": "power (Gaussian fit)",
    "error_rate": "error rate on fresh pairs",
    "mean_with": "mean loss with",
    "mean_without": "mean loss without",
}


def render(title: str, sections: list[tuple[str, str]], lead: str = "") -> str:
    body = "".join(f"<h2>{html.escape(name)}</h2>{content}" for name, content in sections)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{lead}{body}</body></html>"
    )


def write_report(
    run_dir: Path | str,
    images: np.ndarray | None = None,
    features: np.ndarray | None = None,
    single_point: Sequence[Path] = (),
    texts: Sequence[str] | None = None,
) -> Path:
    """Write <run>/report.html from the run's scores and metrics.json, opening with the verdict
    (`report.verdict`). The most exposed records are shown as `images` (uint8 [N, H, W, C], the
    evaluated records') or, for tabular records, as their `features` [N, D], or for text records
    as escaped snippets of their `texts` [N]; `single_point` are
    output folders of with/without experiments to include (<run>/single_point is included when
    it exists). Returns the path."""
    data = load_run(run_dir)
    own = data.run.root / "single_point"
    folders = list(
        dict.fromkeys([*single_point, *([own] if (own / "summary.json").is_file() else [])])
    )
    found = verdict(data)
    tables = evaluation_tables(data.scores, data.keep, data.targets, data.fprs, flag_fpr(data))
    ranking = ranking_section(data, tables)
    sections = [
        ("Attacks: mean over targets", summary_section(data, found)),
        ("ROC curves (log-log)", roc_section(data, found)),
        ("Scores of members and non-members", histogram_section(data)),
        ("PPV against the prior share of members", ppv_section(data, tables)),
        *([("Record rankings without reference models: LT-IQR", ranking)] if ranking else []),
        ("Most vulnerable records", vulnerable_section(data, tables, images, found.attack)),
        ("Calibration of the targets", calibration_section(data)),
        ("Out-of-distribution false positives", ood_section(data)),
        ("Training and defences", training_section(data)),
        *[("Privacy audit: ε lower bounds", s) for s in [dp_audit_section(data.run.root)] if s],
        *[(f"Single-point audit: {f.name}", single_point_section(Path(f))) for f in folders],
        ("Run", metadata_section(data)),
    ]
    path = data.run.root / "report.html"
    title = f"miakit audit: {data.pool.get('name', data.name)}"
    lead = "<h2>Verdict</h2>" + verdict_section(data, found, images, features, texts)
    save_text(path, render(title, sections, lead))
    return path
