"""What the four study scripts share: command-line options, configs at a scale, running an audit
through miakit's Python API, and writing markdown tables and figures.

A study's configs live in `studies/configs/` at CPU scale; each study script holds, per scale,
the overrides it applies on top (`tiny`: seconds on scikit-learn's digits, for the tests; `full`:
the papers' setups, for a GPU machine).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from miakit.config import AuditConfig, load_config
from miakit.pipeline import audit
from miakit.store import RunDir

CONFIGS = Path(__file__).resolve().parent / "configs"
SCALE_NAMES = ("tiny", "cpu", "full")


def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--scale", choices=SCALE_NAMES, default="cpu")
    parser.add_argument("--out", type=Path, required=True, help="folder for runs and results")
    parser.add_argument(
        "--data-dir", type=Path, default=None, help="data directory (default: miakit's)"
    )
    return parser.parse_args(argv)


def study_config(
    name: str, overrides: Sequence[str] = (), data_dir: Path | None = None
) -> AuditConfig:
    """studies/configs/<name>.yaml with `overrides` (`--set`-style `a.b=value`) applied; errors
    name the key path (`MiakitError`)."""
    sets = list(overrides)
    if data_dir is not None:
        sets.append(f"data.data_dir={data_dir}")
    return load_config(CONFIGS / f"{name}.yaml", sets)


def run_audit(config: AuditConfig, folder: Path, trained_in: Path | None = None) -> RunDir:
    """Run (or resume) one audit in `folder`; returns its run directory. `trained_in`: a finished
    run whose models differ from this config's only by query-side settings (temperature scaling,
    Laplace): a new `folder` starts as its copy, so the audit queries them again without
    retraining (miakit's content hashes decide what is reused)."""
    run = RunDir(folder)
    if trained_in is not None and not folder.exists():
        shutil.copytree(trained_in, folder)
    started = time.monotonic()
    print(f"[study] audit {folder}", file=sys.stderr, flush=True)
    audit(config, run, log=None)
    print(f"[study] {folder} done in {time.monotonic() - started:.0f} s", file=sys.stderr)
    return run


def mean_std(values: Sequence[float] | np.ndarray, digits: int = 3) -> str:
    """'mean ± std' over finite values (std with ddof 1; '–' when none is finite)."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return "–"
    std = v.std(ddof=1) if len(v) > 1 else 0.0
    return f"{v.mean():.{digits}f} ± {std:.{digits}f}"


def markdown_table(table: pd.DataFrame, digits: int = 3) -> str:
    """A GitHub markdown table; floats rounded to `digits` places."""

    def cell(value) -> str:
        if isinstance(value, float | np.floating):
            return "–" if not np.isfinite(value) else f"{value:.{digits}f}"
        return str(value)

    lines = [
        "| " + " | ".join(map(str, table.columns)) + " |",
        "|" + "---|" * len(table.columns),
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(False)]
    return "\n".join(lines)


def provenance(scale: str) -> str:
    """Date, machine, load average and scale: the header of every results file."""
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"- date: {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC\n"
        f"- machine: {platform.node()} ({platform.machine()}, {os.cpu_count()} CPU cores)\n"
        f"- load average at the end (1, 5, 15 min): {load} (the machine is shared)\n"
        f"- scale: {scale}\n"
    )


def write_results(out: Path, title: str, scale: str, body: str) -> Path:
    """<out>/results.md: the title, the provenance lines, then `body`."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "results.md"
    path.write_text(f"# {title}\n\n{provenance(scale)}\n{body}\n")
    print(f"[study] wrote {path}", file=sys.stderr)
    return path
