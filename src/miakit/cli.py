"""The `miakit` command: parses arguments and calls the public API (`miakit`) and pipeline.py,
nothing more."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import wraps
from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

import miakit
from miakit import MiakitError, pipeline
from miakit.pipeline import (
    AuditConfig,
    MetricKey,
    RunDir,
    SinglePointConfig,
    exposure_method,
    figure_words,
    load_config,
)

app = typer.Typer(
    help="Membership inference audits of machine-learning models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console(emoji=False)  # a path such as runs/a:x: is printed as it is
errors = Console(stderr=True, emoji=False)

ConfigOption = typer.Option(None, "--config", "-c", help="YAML config file", exists=False)
SetOption = typer.Option(None, "--set", help="override a setting, e.g. --set train.epochs=10")
RunArgument = typer.Argument(..., help="run directory")
AttacksOption = typer.Option(None, "--attacks", help="comma-separated attack names")
AllowCodeOption = typer.Option(
    False,
    "--allow-code",
    help="run the Python code the config names (model.arch python:...); only for your own "
    "configs, never for one received from someone else",
)


def clear_errors(command: Callable[..., Any]) -> Callable[..., Any]:
    """Print MiakitError, and an OSError (a full disk, a read-only folder, a file where a
    folder should be), as one red `error:` line and exit 2 instead of a traceback. The message is
    printed literally: no rich markup or emoji codes are read in paths."""

    @wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except MiakitError as exc:
            message = str(exc)
        except OSError as exc:
            message = os_error_message(exc)
        errors.print(Text.assemble(("error:", "bold red"), " ", message), highlight=False)
        raise typer.Exit(2)

    return wrapper


def os_error_message(exc: OSError) -> str:
    """E.g. "runs/a/report.html: No space left on device (errno 28)"."""
    where = exc.filename if exc.filename is not None else "a file"
    also = f" → {exc.filename2}" if exc.filename2 is not None else ""
    reason = exc.strerror or str(exc)
    code = f" (errno {exc.errno})" if exc.errno else ""
    return f"{where}{also}: {reason}{code}"


def _attack_list(attacks: str | None) -> list[str] | None:
    return [a.strip() for a in attacks.split(",") if a.strip()] if attacks else None


def print_metrics(run: RunDir, config: AuditConfig, strongest: str | None = None) -> None:
    """The evaluated figures of metrics.json as a table that fits 80 columns: AUC, then TPR at
    each evaluated FPR from the largest (the order of the report), mean ± std over targets; "n/m"
    where the data cannot resolve the FPR, "⚠" beside an AUC with a caveat (both explained
    beneath), the strongest attack in bold."""
    stored = json.loads(run.metrics_json.read_text())
    warnings = stored.get("warnings", {})
    fprs = sorted(config.evaluate.fprs, reverse=True)
    table = Table(
        title="membership inference: mean ± std over targets",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        padding=(0, 1),
    )
    table.add_column("attack", no_wrap=True)
    table.add_column("AUC", justify="right", no_wrap=True)
    for x in fprs:
        table.add_column(f"TPR at\n{100 * x:g}%", justify="right", no_wrap=True)
    reasons: dict[float, str] = {}  # FPR → why it is not measurable, in the table's order
    for attack, figures in stored["attacks"].items():
        auc = figures["auc"]
        cells = [f"{auc['mean']:.3f}±{auc['std']:.3f}" + (" ⚠" if attack in warnings else "")]
        for x in fprs:
            f = figures[str(MetricKey("tpr", fpr=x))]
            if "not_measurable" in f:
                reasons[x] = f["not_measurable"]
                cells.append("n/m")
            elif f["mean"] is None:
                cells.append(figure_words(f))
            else:
                cells.append(f"{100 * f['mean']:.1f}±{100 * f['std']:.1f}")
        table.add_row(attack, *cells, style="bold" if attack == strongest else None)
    console.print(table)
    note = (
        f"; strongest attack (highest TPR at FPR 0.1%, at 1% where 0.1% is not measured, then "
        f"AUC): {strongest}"
        if strongest
        else ""
    )
    console.print(f"TPR in % of members, at each FPR{note}.", highlight=False)
    for attack, warning in warnings.items():
        console.print(f"⚠ {attack}: {warning}", highlight=False)
    for attack, reason in stored.get("skipped", {}).items():
        console.print(f"skipped {attack}: {reason}", highlight=False)
    for reason in reasons.values():
        console.print(f"n/m: {reason}", highlight=False)


def print_verdict(found) -> None:
    """The verdict (`miakit.report.verdict.Verdict`): its sentences and the most exposed
    records."""
    console.print("[bold]Verdict[/]")
    for line in found.sentences():
        console.print(f"- {line}", highlight=False)
    if not found.top.empty:
        shown = ", ".join(
            f"#{r.record} (label {r.label}, caught by {r.tp} of {r.n_member})"
            for r in found.top.head(5).itertuples()
        )
        console.print(f"- Most exposed records: {shown}.", highlight=False)


def report_metrics(run: RunDir, config: AuditConfig) -> None:
    """The table of an evaluated run, then its verdict."""
    found = pipeline.verdict(run)
    print_metrics(run, config, found.attack)
    print_verdict(found)


@contextmanager
def resumable(run: Path) -> Iterator[None]:
    """On Ctrl-C: how many models are saved, and that rerunning the command resumes."""
    try:
        yield
    except KeyboardInterrupt:
        saved = pipeline.saved_models(RunDir(run))
        errors.print(f"\n[bold]interrupted:[/] {saved}", highlight=False)
        errors.print("Rerun the same command to resume from there.", highlight=False)
        raise typer.Exit(130) from None


@app.command()
@clear_errors
def audit(
    config: Path | None = ConfigOption,
    set_: list[str] | None = SetOption,
    out: Path = typer.Option(Path("runs/audit"), "--out", "-o", help="run directory"),
    data_dir: Path | None = typer.Option(None, "--data-dir", help="where data files live"),
    allow_code: bool = AllowCodeOption,
) -> None:
    """Plan, train, query, attack and evaluate: a whole audit (resumes where it stopped)."""
    overrides = [*(set_ or []), *([f"data.data_dir={data_dir}"] if data_dir else [])]
    cfg = load_config(config, overrides)
    run = RunDir(out)
    with resumable(out), pipeline.allowing_code(allow_code):
        pipeline.audit(cfg, run)
    report_metrics(run, cfg)
    console.print(f"metrics: {run.metrics_csv}  tables: {run.root / 'tables'}/", markup=False)
    console.print(f"report: {run.root / 'report.html'}", markup=False)


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
    planned = pipeline.with_execution(pipeline.load_plan(run_dir), executor, workers)
    return stage(planned, run_dir, _parse_shard(shard))


@app.command()
@clear_errors
def train(
    run: Path = RunArgument,
    shard: str | None = ShardOption,
    executor: str | None = ExecutorOption,
    workers: int | None = WorkersOption,
    allow_code: bool = AllowCodeOption,
) -> None:
    """Train the planned run's models that are missing or stale."""
    with resumable(run), pipeline.allowing_code(allow_code):
        trained = _run_model_stage(pipeline.train, run, shard, executor, workers)
    console.print(f"trained {len(trained)} models")


@app.command()
@clear_errors
def query(
    run: Path = RunArgument,
    shard: str | None = ShardOption,
    executor: str | None = ExecutorOption,
    workers: int | None = WorkersOption,
    allow_code: bool = AllowCodeOption,
) -> None:
    """Write logits for the trained models whose logits are missing or stale."""
    with pipeline.allowing_code(allow_code):
        queried = _run_model_stage(pipeline.query, run, shard, executor, workers)
    console.print(f"queried {len(queried)} models")


@app.command()
@clear_errors
def status(run: Path = RunArgument) -> None:
    """Which models of a planned run are done, running, stale or missing; for a run of
    brought-in models, which of its parts are there."""
    run_dir = RunDir(run)
    if not run_dir.run_yaml.is_file():
        table = Table(title=f"{run}: brought-in models")
        table.add_column("part")
        table.add_column("present")
        for part, present in pipeline.brought_in_status(run_dir).items():
            table.add_row(part, present)
        console.print(table)
        return
    states = pipeline.status(run_dir)
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
    console.print(f"scores written for: {', '.join(names) or 'none (all were current)'}")


@app.command()
@clear_errors
def evaluate(
    run: Path = RunArgument,
    attacks: str | None = AttacksOption,
    allow_code: bool = AllowCodeOption,
) -> None:
    """Compute metrics and ROC plots from the stored scores (queries the models again for an
    evaluate.ood study)."""
    run_dir = RunDir(run)
    cfg = pipeline.run_config(run_dir)
    with pipeline.allowing_code(allow_code):
        pipeline.evaluate(run_dir, cfg, _attack_list(attacks))
    report_metrics(run_dir, cfg)


@app.command("audit-dp")
@clear_errors
def audit_dp(run: Path = RunArgument) -> None:
    """Empirical ε lower bounds from the run's canaries (dp_audit section): RUN/audit.json."""
    run_dir = RunDir(run)
    result = pipeline.audit_dp(run_dir, pipeline.run_config(run_dir))
    table = Table("attack", "ε one run", "ε many runs", "μ (independent trials)")
    secrets = result.get("exposure")
    rows = dict(result["attacks"]) | ({"exposure": secrets["bounds"]} if secrets else {})
    for name, figures in rows.items():
        many = figures.get("many_runs") or {}
        table.add_row(
            name,
            f"{figures['one_run']['epsilon_lower']:.3g}",
            "–" if not many else f"{many['epsilon_lower']:.3g}",
            "–" if not many else f"{many['independent_trials']['mu_lower']:.3g}",
        )
    console.print(table)
    eps = result["accountant_epsilon"]
    console.print(f"accountant ε: {'–' if eps is None else f'{eps:.3g}'}  δ={result['delta']:g}")
    if secrets:
        console.print(
            f"exposure of the secret canaries (bits, of {secrets['max_bits']:.2f}; "
            f"{exposure_method(secrets)}): "
            f"{secrets['members_mean']:.2f} where trained on, "
            f"{secrets['non_members_mean']:.2f} where not"
        )
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
    console.print(f"report: {pipeline.report(RunDir(run), single_point or [])}", markup=False)


@app.command()
@clear_errors
def compare(
    runs: list[Path] = typer.Argument(..., help="two or more evaluated run directories"),
    out: Path = typer.Option(Path("runs/compare"), "--out", "-o", help="output folder"),
) -> None:
    """Several runs in one table and one ROC plot (e.g. baseline vs defences); runs on different
    data sets are refused."""
    comparison = pipeline.compare([RunDir(r) for r in runs], out)
    for warning in comparison.warnings:
        errors.print(f"[bold yellow]warning:[/] {warning}", highlight=False)
    table = Table(title="privacy and utility: targets' mean", box=box.SIMPLE_HEAD, pad_edge=False)
    columns = {
        "run": "run",
        "test_accuracy": "test acc",
        "epsilon": "ε",
        "strongest_attack": "strongest attack",
        "auc": "AUC",
        str(MetricKey("tpr", fpr=0.01)): "TPR@1%",
        str(MetricKey("tpr", fpr=0.001)): "TPR@0.1%",
    }
    shown = [c for c in columns if c in comparison.privacy_utility]
    for c in shown:
        table.add_column(
            columns[c], justify="left" if c in ("run", "strongest_attack") else "right"
        )
    for row in comparison.privacy_utility.to_dict("records"):
        table.add_row(*(_cell(c, row[c]) for c in shown))
    console.print(table)
    console.print("test acc: accuracy on the targets' non-members. TPR in %.")
    console.print(f"comparison: {comparison.path}", markup=False)


def _cell(column: str, value) -> str:
    if value is None or (isinstance(value, float) and value != value):  # None or NaN
        return "–"
    if column == "test_accuracy" or MetricKey.parse(column).name == "tpr":
        return f"{100 * value:.1f}"
    if column == "auc":
        return f"{value:.3f}"
    if column == "epsilon":
        return f"{value:.3g}"
    return str(value)


@app.command("single-point")
@clear_errors
def single_point(
    config: Path | None = ConfigOption,
    set_: list[str] | None = SetOption,
    out: Path = typer.Option(Path("runs/single_point"), "--out", "-o", help="output folder"),
    allow_code: bool = AllowCodeOption,
) -> None:
    """With/without experiment: how reliably can one record's membership be told? (resumes)"""
    cfg = load_config(config, set_, schema=SinglePointConfig)
    with pipeline.allowing_code(allow_code), pipeline.progress_bar() as bar:
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
    console.print(f"summary: {out / 'summary.csv'}", markup=False)


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
    console.print(f"{name}: ready in {folder}", markup=False)


models_app = typer.Typer(help="The model architectures: built-in networks, estimators, yours.")
app.add_typer(models_app, name="models")
ModelsDataOption = typer.Option(
    None, "--data", help="count parameters for this registered data set's records"
)


@models_app.command("list")
@clear_errors
def models_list(data: str | None = ModelsDataOption) -> None:
    """Every form of model.arch: the built-in networks (with their parameter count for --data's
    records), sklearn estimators and python:module:factory."""
    title = "model.arch" + (f" (parameters for {data})" if data else "")
    table = Table(title=title, show_lines=True)
    for column in ["arch", "what", "parameters"]:
        table.add_column(column, justify="right" if column == "parameters" else "left")
    for name, what, count in pipeline.list_models(data):
        table.add_row(Text(name), Text(what), "—" if count is None else f"{count:,}")
    if not console.is_terminal:
        console.width = max(console.width, 160)
    console.print(table)


attacks_app = typer.Typer(help="The registered membership inference attacks.")
app.add_typer(attacks_app, name="attacks")


@attacks_app.command("list")
@clear_errors
def attacks_list() -> None:
    """Every attack (names for `attacks:` and --attacks; `all` names them all) and its options
    for `attack_options`, with defaults and descriptions."""
    table = Table(title="attacks (attack_options.<name>.<option>)", show_lines=True)
    for column in ["name", "what", "options"]:
        table.add_column(column)
    for info in miakit.attacks():
        described = "\n".join(
            f"{o.name}: {o.default!r}" + (f" — {o.description}" if o.description else "")
            for o in info.options
        )
        table.add_row(Text(info.name), Text(info.what), Text(described or "(none)"))
    if not console.is_terminal:
        console.width = max(console.width, 160)
    console.print(table)
