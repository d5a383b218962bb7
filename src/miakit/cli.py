"""The `miakit` command: parses arguments and calls pipeline.py, nothing more."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from functools import wraps
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from miakit import pipeline
from miakit.config import (
    AuditConfig,
    ExecutionConfig,
    SinglePointConfig,
    format_validation_error,
    load_config,
)
from miakit.errors import MiakitError
from miakit.evaluate.metrics import tpr_metric_name
from miakit.store import RunDir

app = typer.Typer(
    help="Membership inference audits of machine-learning models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)

ConfigOption = typer.Option(None, "--config", "-c", help="YAML config file", exists=False)
SetOption = typer.Option(None, "--set", help="override a setting, e.g. --set train.epochs=10")
RunArgument = typer.Argument(..., help="run directory")
AttacksOption = typer.Option(None, "--attacks", help="comma-separated attack names")


def clear_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Print MiakitError as one red line and exit 2 instead of a traceback."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MiakitError as exc:
            errors.print(f"[bold red]error:[/] {exc}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper


def _attack_list(attacks: str | None) -> list[str] | None:
    return [a.strip() for a in attacks.split(",") if a.strip()] if attacks else None


def print_metrics(metrics: dict, config: AuditConfig) -> None:
    headers = {"auc": "AUC", "balanced_accuracy": "bal. acc"}
    headers.update({tpr_metric_name(x): f"TPR@{100 * x:g}%" for x in config.evaluate.fprs})
    table = Table(title="membership inference: mean ± std over targets")
    table.add_column("attack", no_wrap=True)
    for header in headers.values():
        table.add_column(header, justify="right", no_wrap=True)
    for attack, figures in metrics.items():
        table.add_row(
            attack, *(f"{figures[c]['mean']:.3f}±{figures[c]['std']:.3f}" for c in headers)
        )
    if not console.is_terminal:  # logs and pipes get the whole table, not a wrapped one
        console.width = max(console.width, 110)
    console.print(table)


@app.command()
@clear_errors
def audit(
    config: Path | None = ConfigOption,
    set_: list[str] | None = SetOption,
    out: Path = typer.Option(Path("runs/audit"), "--out", "-o", help="run directory"),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="where data files live"),
) -> None:
    """Plan, train, query, attack and evaluate: a whole audit (resumes where it stopped)."""
    overrides = [*(set_ or []), *([f"data.data_dir={data_dir}"] if data_dir else [])]
    cfg = load_config(config, overrides)
    run = RunDir(out)
    metrics = pipeline.audit(cfg, run)
    print_metrics(metrics, cfg)
    console.print(f"metrics: {run.metrics_csv}  tables: {run.root / 'tables'}/")
    console.print(f"report: {run.root / 'report.html'}")


ShardOption = typer.Option(None, "--shard", help="i/n: only the i-th of n slices of the models")
ExecutorOption = typer.Option(None, "--executor", help="local, processes or ray")
WorkersOption = typer.Option(None, "--workers", help="worker processes (--executor processes)")


def _parse_shard(shard: str | None) -> tuple[int, int] | None:
    if shard is None:
        return None
    index, sep, count = shard.partition("/")
    if not (sep and index.isdigit() and count.isdigit()) or int(count) < 1:
        raise MiakitError(f"--shard expects i/n such as 0/4, got {shard!r}")
    return int(index), int(count)


def _run_model_stage(
    stage, run: Path, shard: str | None, executor: str | None, workers: int | None
) -> list[int]:
    """Run `stage` (pipeline.train or pipeline.query) on the run's plan, with the command line's
    execution settings: they change no model, so they may differ from run.yaml's."""
    run_dir = RunDir(run)
    planned = pipeline.load_plan(run_dir)
    settings = planned.config.execution.model_dump()
    settings.update({k: v for k, v in {"executor": executor, "workers": workers}.items() if v})
    try:
        execution = ExecutionConfig.model_validate(settings)
    except ValidationError as exc:
        raise MiakitError(format_validation_error(exc)) from exc
    config = planned.config.model_copy(update={"execution": execution})
    return stage(replace(planned, config=config), run_dir, _parse_shard(shard))


@app.command()
@clear_errors
def train(
    run: Path = RunArgument,
    shard: str | None = ShardOption,
    executor: str | None = ExecutorOption,
    workers: int | None = WorkersOption,
) -> None:
    """Train the planned run's models that are missing or stale."""
    trained = _run_model_stage(pipeline.train, run, shard, executor, workers)
    console.print(f"trained {len(trained)} models")


@app.command()
@clear_errors
def query(
    run: Path = RunArgument,
    shard: str | None = ShardOption,
    executor: str | None = ExecutorOption,
    workers: int | None = WorkersOption,
) -> None:
    """Write logits for the trained models whose logits are missing or stale."""
    queried = _run_model_stage(pipeline.query, run, shard, executor, workers)
    console.print(f"queried {len(queried)} models")


@app.command()
@clear_errors
def status(run: Path = RunArgument) -> None:
    """Which models of a planned run are done, running, stale or missing."""
    states = pipeline.status(RunDir(run))
    table = Table(title=f"models of {run}")
    table.add_column("state")
    table.add_column("count", justify="right")
    table.add_column("models")
    for state, models in states.items():
        shown = ", ".join(map(str, models[:20])) + (" …" if len(models) > 20 else "")
        table.add_row(state, str(len(models)), shown)
    console.print(table)


@app.command()
@clear_errors
def attack(run: Path = RunArgument, attacks: str | None = AttacksOption) -> None:
    """Score every target model with each attack (also for runs of brought-in models)."""
    run_dir = RunDir(run)
    names = pipeline.attack(run_dir, pipeline.run_config(run_dir), _attack_list(attacks))
    console.print(f"scores written for: {', '.join(names)}")


@app.command()
@clear_errors
def evaluate(run: Path = RunArgument, attacks: str | None = AttacksOption) -> None:
    """Compute metrics and ROC plots from the stored scores."""
    run_dir = RunDir(run)
    cfg = pipeline.run_config(run_dir)
    metrics = pipeline.evaluate(run_dir, cfg, _attack_list(attacks))
    print_metrics(metrics, cfg)


@app.command("audit-dp")
@clear_errors
def audit_dp(run: Path = RunArgument) -> None:
    """Empirical ε lower bounds from the run's canaries (dp_audit section): RUN/audit.json."""
    run_dir = RunDir(run)
    result = pipeline.audit_dp(run_dir, pipeline.run_config(run_dir))
    table = Table("attack", "ε one run", "ε many runs", "μ many runs")
    for name, figures in result["attacks"].items():
        many = figures.get("many_runs") or {}
        table.add_row(
            name,
            f"{figures['one_run']['epsilon_lower']:.3g}",
            "–" if not many else f"{many['epsilon_lower']:.3g}",
            "–" if not many else f"{many['mu_lower']:.3g}",
        )
    console.print(table)
    eps = result["accountant_epsilon"]
    console.print(f"accountant ε: {'–' if eps is None else f'{eps:.3g}'}  δ={result['delta']:g}")
    console.print(f"audit: {run_dir.root / 'audit.json'}")


@app.command()
@clear_errors
def report(
    run: Path = RunArgument,
    single_point: list[Path] | None = typer.Option(
        None,
        "--single-point",
        help="output folder of `miakit single-point` to include (repeatable); "
        "RUN/single_point is included when present",
    ),
) -> None:
    """Write the run's self-contained report.html (after `miakit evaluate`)."""
    console.print(f"report: {pipeline.report(RunDir(run), single_point or [])}")


@app.command()
@clear_errors
def compare(
    runs: list[Path] = typer.Argument(..., help="two or more evaluated run directories"),
    out: Path = typer.Option(Path("runs/compare"), "--out", "-o", help="output folder"),
) -> None:
    """Several runs in one table and one ROC plot (e.g. baseline vs defences)."""
    console.print(f"comparison: {pipeline.compare([RunDir(r) for r in runs], out)}")


@app.command("single-point")
@clear_errors
def single_point(
    config: Path | None = ConfigOption,
    set_: list[str] | None = SetOption,
    out: Path = typer.Option(Path("runs/single_point"), "--out", "-o", help="output folder"),
) -> None:
    """With/without experiment: how reliably can one record's membership be told? (resumes)"""
    cfg = load_config(config, set_, schema=SinglePointConfig)
    with pipeline.progress_bar() as bar:
        rounds = bar.add_task("rounds", total=cfg.n_iterations + cfg.eval_pairs)
        epochs = bar.add_task("epochs of the model in training", total=cfg.train.epochs)
        results = pipeline.run_single_point(
            cfg,
            out,
            on_round=lambda done, total: bar.update(rounds, completed=done),
            on_epoch=lambda done, total: bar.update(epochs, completed=done, total=total),
        )
    table = Table(title=f"with/without test at α = {cfg.alpha:g}, {cfg.n_iterations} rounds")
    for column in [
        "rank",
        "record",
        "label",
        "power",
        "95% interval",
        "Gaussian power",
        "error rate",
    ]:
        table.add_column(column, justify="right")
    for rank, r in enumerate(results, start=1):
        p = r.power
        table.add_row(
            str(rank),
            str(r.index),
            str(r.label),
            f"{p.power_empirical:.3f}",
            f"[{p.power_ci_low:.2f}, {p.power_ci_high:.2f}]",
            f"{p.power_gaussian:.3f}",
            f"{r.error_rate:.3f}",
        )
    console.print(table)
    console.print(f"summary: {out / 'summary.csv'}")


datasets_app = typer.Typer(help="The data sets miakit knows: list them, fetch them.")
app.add_typer(datasets_app, name="datasets")
DataDirOption = typer.Option(None, "--data-dir", help="where data files live")


@datasets_app.command("list")
@clear_errors
def datasets_list(data_dir: Path | None = DataDirOption) -> None:
    """Every data set: present or not, size on disk, records, classes, source."""
    table = Table(title=f"data sets in {pipeline.resolve_data_dir(data_dir)}")
    for column in ["name", "present", "size", "records", "test", "classes", "shape", "source"]:
        table.add_column(column, justify="left" if column in ("name", "source") else "right")
    for row in pipeline.list_datasets(data_dir):
        table.add_row(
            row.name,
            "yes" if row.present else "no",
            f"{row.size_bytes / 2**20:.1f} MiB",
            str(row.records),
            str(row.test_records),
            str(row.num_classes),
            "×".join(map(str, row.shape)),
            row.source,
        )
    if not console.is_terminal:
        console.width = max(console.width, 160)
    console.print(table)


@datasets_app.command("fetch")
@clear_errors
def datasets_fetch(name: str, data_dir: Path | None = DataDirOption) -> None:
    """Download a data set's official files, verify their checksums, and load it once."""
    folder = pipeline.fetch_dataset(name, data_dir, console=errors)
    console.print(f"{name}: ready in {folder}")
