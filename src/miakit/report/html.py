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
from miakit.evaluate.tables import evaluation_tables
from miakit.evaluate.vulnerability import FLAG_FPR, flagged_members
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
from miakit.signals import softmax
from miakit.store import save_text

#: The LiRA whose scores LT-IQR is plotted against: the first of these the run has.
LIRA = ("lira-online", "lira-offline")
TOP_RECORDS = 24

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
.records img { image-rendering: pixelated; border: 1px solid #ccc; }
"""


def pct(value: float | None) -> str:
    return "–" if value is None or np.isnan(value) else f"{100 * value:.2f}%"


def decimal(value: float) -> str:
    return f"{value:.3f}"


def figure_tag(fig, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{png_base64(fig)}">'


def table_tag(frame: pd.DataFrame) -> str:
    return frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="–", border=0)


def most_exposing_attack(tables: dict[str, pd.DataFrame], attacks: list[str]) -> str:
    """The attack with the most highly vulnerable records (the first such in the run's order)."""
    counts = [tables[f"vulnerability_{a}"]["highly_vulnerable"].sum() for a in attacks]
    return attacks[int(np.argmax(counts))]


def flag_fpr(data: RunData) -> float:
    """The FPR record-level figures use: 0.1% when evaluated, else the smallest evaluated."""
    return FLAG_FPR if FLAG_FPR in data.fprs else data.fprs[0]


def summary_section(data: RunData, tables: dict[str, pd.DataFrame]) -> str:
    x = flag_fpr(data)
    rows = []
    for attack, figures in data.metrics.items():

        def cell(name: str, figures: dict = figures, fmt=pct) -> str:
            f = figures.get(name)
            if f is None or f["mean"] is None:
                return "–"
            ci = f" [{fmt(f['ci_low'])}, {fmt(f['ci_high'])}]" if "ci_low" in f else ""
            return fmt(f["mean"]) + ci

        row = {
            "attack": attack,
            "AUC": cell("auc", fmt=decimal),
            "balanced accuracy": cell("balanced_accuracy", fmt=decimal),
        }
        for fpr in data.fprs:
            fp = figures[f"fp@fpr={fpr:g}"]["mean"]
            row[f"TPR@FPR {fpr:g}"] = f"{cell(f'tpr@fpr={fpr:g}')} (mean FP {fp:.1f})"
        row[f"shadow TPR′ / FPR′ at {x:g}"] = (
            f"{cell(f'shadow_tpr@fpr={x:g}')} / {cell(f'shadow_fpr@fpr={x:g}')}"
        )
        row["shadow PPV at π = 1%"] = cell(f"shadow_ppv@fpr={x:g},prior=0.01")
        vulnerability = tables.get(f"vulnerability_{attack}")
        if vulnerability is not None:
            row["highly vulnerable records"] = str(int(vulnerability["highly_vulnerable"].sum()))
        rows.append(row)
    return (
        table_tag(pd.DataFrame(rows))
        + f'<p class="note">Mean over {len(data.targets)} target models; brackets: 95% bootstrap '
        "interval of the mean (records resampled). FP: false positives behind the TPR. Shadow: "
        "the threshold is the median of the other targets' thresholds, as an attacker without the "
        "target's membership would set it; TPR′ and FPR′ are what it achieves on the target. "
        "Highly vulnerable: called member by some target that trained on it and by none that did "
        "not, under the shadow threshold.</p>"
    )


def members_matrix(data: RunData) -> np.ndarray:
    return data.keep[data.targets]


def roc_section(data: RunData) -> str:
    members = members_matrix(data).ravel()
    curves = {a: (s.ravel(), members) for a, s in data.scores.items()}
    fig = roc_figure(curves, floor=1 / data.keep.shape[1])
    return figure_tag(fig, "ROC curves") + '<p class="note">All targets pooled.</p>'


def ppv_section(data: RunData, tables: dict[str, pd.DataFrame]) -> str:
    if "thresholds" not in tables:
        return '<p class="note">Needs two targets or more.</p>'
    return "".join(figure_tag(ppv_figure(tables["thresholds"], x), "PPV") for x in data.fprs)


def histogram_section(data: RunData) -> str:
    members = members_matrix(data)
    return figure_tag(histogram_figure(data.scores, members), "score histograms")


def ranking_section(data: RunData, tables: dict[str, pd.DataFrame]) -> str:
    """LT-IQR against LiRA on the first target, and precision@k of the cheap rankings."""
    parts = []
    lira = next((a for a in LIRA if a in data.scores), None)
    if "lt-iqr" in data.scores and lira is not None:
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
        means.columns = [f"{kind}@{100 * f:g}%" for kind, f in means.columns]
        means = means.reset_index()
        parts.append(
            table_tag(means)
            + '<p class="note">Precision@k and recall@k of a ranking of each target\'s members '
            f"(top k = k% of its members) against the members the reference flags at FPR "
            f"{flag_fpr(data):g}; mean over targets.</p>"
        )
    return "".join(parts) or (
        '<p class="note">Needs scores of LT-IQR or loss, and of LiRA, Attack-R or RMIA.</p>'
    )


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
        f"<figcaption>#{r.record} y={r.label}<br>TP {r.tp} FP {r.fp}</figcaption></figure>"
        for r in top.itertuples()
    )
    return f'<div class="records">{cells}</div>'


def vulnerable_section(
    data: RunData, tables: dict[str, pd.DataFrame], images: np.ndarray | None
) -> str:
    if "thresholds" not in tables:
        return '<p class="note">Needs two targets or more.</p>'
    attack = most_exposing_attack(tables, list(data.scores))
    table = tables[f"vulnerability_{attack}"]
    top = table.sort_values("rank").head(TOP_RECORDS).rename(columns={"record": "row"})
    top = top.assign(
        label=data.labels[top["row"]],
        record=top["row"] if data.evaluated is None else data.evaluated[top["row"]],
    )
    columns = [
        "rank",
        "record",
        "label",
        "tp",
        "fp",
        "n_member",
        "mean_member_score",
        "highly_vulnerable",
    ]
    parts = [
        f"<p>By {attack}, the attack exposing most records, under its shadow-calibrated "
        f"threshold at FPR {flag_fpr(data):g}. Record: the index in the pool.</p>"
    ]
    if images is not None:
        if len(images) != data.keep.shape[1]:
            raise MiakitError(
                f"{len(images)} images given for a pool of {data.keep.shape[1]} records"
            )
        parts.append(records_grid(images, top))
    return "".join(parts) + table_tag(top[columns])


def calibration_section(data: RunData) -> str:
    table, logits = data.calibration, data.target_logits()
    if table is None or logits is None:
        return '<p class="note">No logits.npy for the targets: calibration needs them.</p>'
    probs = softmax(np.asarray(logits[0][:, 0, :], dtype=np.float64))
    members = data.keep[0]
    diagrams = {
        "target 0, members": reliability(probs[members], data.labels[members]),
        "target 0, non-members": reliability(probs[~members], data.labels[~members]),
    }
    means = table.drop(columns="target").mean().to_frame("mean over targets").T
    return figure_tag(reliability_figure(diagrams), "reliability diagram") + table_tag(means)


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
        "held-out test accuracy (targets' mean)": pct(figures["test_accuracy"]),
        "pool accuracy, members / non-members": (
            f"{pct(figures.get('pool_train_accuracy'))} / {pct(figures.get('pool_test_accuracy'))}"
        ),
        "ECE on non-members": (
            "–" if "pool_test_ece" not in figures else decimal(figures["pool_test_ece"])
        ),
    }
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in facts.items()
    )
    shown = models.dropna(axis=1, how="all").head(TOP_RECORDS)
    more = len(models) - len(shown)
    note = f'<p class="note">First {len(shown)} of {len(models)} models.</p>' if more else ""
    return f"<table>{rows}</table>" + table_tag(shown) + note


def ood_section(data: RunData) -> str:
    """Per attack and out-of-distribution set, the share of its records called member at the
    threshold that gives FPR x on the target's own non-members (mean over targets)."""
    rows: dict[tuple[str, str], dict[str, str]] = {}
    for attack, figures in data.metrics.items():
        for name, f in figures.items():
            if name.startswith("ood_fpr@"):
                fpr, ood_set = (part.split("=")[1] for part in name[len("ood_fpr@") :].split(","))
                rows.setdefault((attack, ood_set), {})[fpr] = pct(f["mean"])
    fprs = sorted({float(x) for row in rows.values() for x in row}, reverse=True)
    columns = {f"{x:g}": f"OOD FPR at FPR {x:g}" for x in fprs}
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
    return (
        f"<p>{html.escape(str(folder))}: {len(records)} records ranked by the power of the "
        f"with/without test at α = {alpha:g}.</p>"
        + table_tag(records)
        + f'<div class="records">{pictures}</div>'
    )


def render(title: str, sections: list[tuple[str, str]]) -> str:
    body = "".join(f"<h2>{html.escape(name)}</h2>{content}" for name, content in sections)
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f"<body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def write_report(
    run_dir: Path | str,
    images: np.ndarray | None = None,
    single_point: Sequence[Path] = (),
) -> Path:
    """Write <run>/report.html from the run's scores and metrics.json; `images` (the pool's uint8
    images, [N, H, W, C]) show the most vulnerable records; `single_point` are output folders of
    with/without experiments to include (<run>/single_point is included when it exists).
    Returns the path."""
    data = load_run(run_dir)
    own = data.run.root / "single_point"
    folders = list(
        dict.fromkeys([*single_point, *([own] if (own / "summary.json").is_file() else [])])
    )
    tables = evaluation_tables(data.scores, data.keep, data.targets, data.fprs, flag_fpr(data))
    sections = [
        ("Summary", summary_section(data, tables)),
        ("ROC curves (log-log)", roc_section(data)),
        ("Scores of members and non-members", histogram_section(data)),
        ("PPV against the prior share of members", ppv_section(data, tables)),
        ("Record rankings: LT-IQR and precision@k", ranking_section(data, tables)),
        ("Most vulnerable records", vulnerable_section(data, tables, images)),
        ("Calibration of the targets", calibration_section(data)),
        ("Out-of-distribution false positives", ood_section(data)),
        ("Training and defences", training_section(data)),
        *[("Privacy audit: ε lower bounds", s) for s in [dp_audit_section(data.run.root)] if s],
        *[(f"Single-point audit: {f.name}", single_point_section(Path(f))) for f in folders],
        ("Run", metadata_section(data)),
    ]
    path = data.run.root / "report.html"
    save_text(path, render(f"miakit audit: {data.pool.get('name', data.name)}", sections))
    return path
