"""report.html and compare.html from small synthetic run directories the tests write themselves."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from miakit.errors import MiakitError
from miakit.evaluate.intervals import INTERVAL_NOTE
from miakit.evaluate.metrics import long_rows, small_m_warning, summarize
from miakit.evaluate.tables import write_evaluation_tables
from miakit.report.compare import compare_runs
from miakit.report.html import TOP_RECORDS, write_report
from miakit.store import RunDir, save_json, save_npy
from tests.synthetic import balanced_keep_matrix

MODELS, RECORDS, TARGETS, CLASSES = 6, 300, 4, 3
ATTACKS = ("lira-online", "attack-r", "loss", "lt-iqr")


def write_run(root: Path, seed: int = 0) -> RunDir:
    """A run directory as the pipeline leaves it after evaluate, with scores where members score
    higher and a few records that every attack exposes."""
    rng = np.random.default_rng(seed)
    run = RunDir(root)
    keep = balanced_keep_matrix(MODELS, RECORDS, seed=1)
    labels = rng.integers(0, CLASSES, RECORDS)
    exposed = np.zeros(RECORDS)
    exposed[:10] = 6.0  # records 0..9 stand out whenever they are members
    save_npy(run.keep, keep)
    save_npy(run.labels, labels)
    save_json(run.pool, {"name": "synthetic", "num_records": RECORDS, "targets": [0, 1, 2, 3]})
    run.run_yaml.write_text("seed: 0\nsplit:\n  num_models: 6\n")
    metrics = {}
    for k, attack in enumerate(ATTACKS):
        signal = rng.normal(size=(TARGETS, RECORDS)) + keep[:TARGETS] * (0.5 + k * 0.3 + exposed)
        save_npy(run.scores(attack), signal)
        metrics[attack] = summarize(signal, keep, range(TARGETS), [0.01, 0.001])
    for m in range(TARGETS):
        logits = rng.normal(size=(RECORDS, 1, CLASSES))
        logits[np.arange(RECORDS), 0, labels] += np.where(keep[m], 4.0, 1.0)
        save_npy(run.logits(m), logits)
    warning = small_m_warning("lira-online", MODELS, leave_one_out=True, reference_counts="all")
    save_json(
        run.metrics_json,
        {"attacks": metrics, "intervals": INTERVAL_NOTE, "warnings": {"lira-online": warning}},
    )
    pd.DataFrame(long_rows(metrics)).to_csv(run.metrics_csv, index=False)
    return run


def synthetic_images() -> np.ndarray:
    rng = np.random.default_rng(5)
    return rng.integers(0, 256, size=(RECORDS, 8, 8, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    """One rendered report, shared by the tests that only read it."""
    run = write_run(tmp_path_factory.mktemp("report") / "run")
    path = write_report(run.root, images=synthetic_images())
    assert path == run.root / "report.html"
    return path


def test_report_is_self_contained_and_has_every_section(report):
    page = report.read_text()
    for heading in ("Verdict", "Attacks", "ROC curves", "PPV", "LT-IQR", "Most vulnerable"):
        assert heading in page
    assert page.index("Verdict") < page.index("Attacks") < page.index("Calibration")
    images = re.findall(r'<img [^>]*src="([^"]+)"', page)
    assert len(images) >= 5 + TOP_RECORDS and all(  # no PPV panel at the unmeasurable 0.1%
        src.startswith("data:image/png;base64,") for src in images
    )
    assert "<script" not in page and "http://" not in page and "https://" not in page
    # the exposed records 0..9 lead the vulnerable list: rank 1..5 rows name records below 10
    vulnerable = page[page.index("Most vulnerable") :]
    leaders = re.findall(r"<tr>\s*<td>[1-5]</td>\s*<td>(\d+)</td>", vulnerable)
    assert len(leaders) == 5 and all(int(r) < 10 for r in leaders)


def test_report_says_what_is_not_measurable_what_intervals_are_and_small_m(report):
    page = report.read_text()
    summary = page[page.index("Attacks: mean over targets") : page.index("ROC curves")]
    pattern = r"<tr[^>]*>\s*<td>([a-z-]+)(?: \(strongest\))?</td>(.*?)</tr>"
    rows = {r[0]: r for r in re.findall(pattern, summary, re.S)}
    # ~150 non-members per target: FPR 1% is measured, FPR 0.1% (needs 1000) is not
    assert all("not measurable" in rows[a][1] for a in ATTACKS)
    assert "needs at least 1000 non-members per target" in summary
    assert "DeLong" in summary and "averaged over targets" in summary
    assert "only 6 models (&lt; 32)" in rows["lira-online"][1]
    assert "models (&lt; 32)" not in rows["loss"][1]
    ppv = page[page.index("PPV") :]
    assert "Not shown, not measurable with this many non-members per target: FPR 0.001" in ppv


def test_report_without_metrics_says_what_to_run(tmp_path):
    run = write_run(tmp_path / "run")
    run.metrics_json.unlink()
    with pytest.raises(MiakitError, match="miakit evaluate"):
        write_report(run.root)


def test_compare_puts_runs_in_one_table(tmp_path):
    runs = [write_run(tmp_path / f"seed{s}", seed=s).root for s in range(3)]
    page = compare_runs(runs, tmp_path / "cmp").path
    table = pd.read_parquet(tmp_path / "cmp" / "compare.parquet")
    assert set(table["run"]) == {"seed0", "seed1", "seed2"}
    agreement = pd.read_parquet(tmp_path / "cmp" / "agreement.parquet")
    # three runs: combinations of 2 (three of them) and of 3 (one)
    assert agreement.groupby("attack")["combinations"].apply(list).iloc[0] == [3, 1]
    assert "data:image/png;base64," in page.read_text()


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (apt-get install chromium)")
def test_report_renders_in_headless_chromium(report, tmp_path):
    shot = tmp_path / "shot.png"
    result = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,2400",
            "--hide-scrollbars",
            f"--screenshot={shot}",
            "--enable-logging=stderr",
            "--v=0",
            report.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert shot.is_file(), result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
    assert "Failed to load resource" not in result.stderr
    rgb = np.asarray(Image.open(shot).convert("RGB"), dtype=int)
    pixels = rgb.mean(axis=2)
    # plots are on the page: plenty of non-white pixels, and a real spread of tones
    assert (pixels < 200).mean() > 0.02 and pixels.std() > 20

    def rows_of(colour: tuple[int, int, int]) -> np.ndarray:
        """Screenshot rows (y) holding pixels of the report's CSS colour."""
        return np.flatnonzero((np.abs(rgb - colour) <= 2).all(axis=2).any(axis=1))

    verdict = rows_of((255, 243, 205))  # .verdict background
    thumbnails = rows_of((192, 57, 43))  # the exposed records' frames
    roc = rows_of((44, 123, 229))  # the ROC figure's frame
    assert len(verdict) > 100, "the verdict box is not drawn"
    assert verdict.min() < 300, "the verdict is not at the top of the page"
    # the exposed records' pictures sit inside the verdict box, each framed, at least 30 px high
    inside = thumbnails[(thumbnails >= verdict.min()) & (thumbnails <= verdict.max())]
    assert inside.max() - inside.min() >= 30, "no exposed-record pictures in the verdict"
    # the ROC figure is drawn below the verdict, about as high as its PNG (520 px)
    assert roc.min() > verdict.max() and roc.max() - roc.min() > 400, "no ROC figure"


def test_evaluation_tables_are_parquet_with_csv_beside(tmp_path):
    run = write_run(tmp_path / "run")
    scores = {a: np.load(run.scores(a)) for a in ATTACKS}
    paths = write_evaluation_tables(run, scores, [0.01, 0.001])
    expected = {"thresholds", "precision_at_k", "calibration"} | {
        f"vulnerability_{a}" for a in ATTACKS
    }
    assert {p.stem for p in paths} == expected
    assert all(p.with_suffix(".csv").is_file() for p in paths)
    vulnerable = pd.read_parquet(run.root / "tables" / "vulnerability_lira-online.parquet")
    assert vulnerable["highly_vulnerable"].dtype == bool and len(vulnerable) == RECORDS
    assert set(vulnerable.loc[vulnerable["rank"] <= 5, "record"]) <= set(range(10))


def write_meta(
    run: RunDir, epsilon: float | None, temperature: float | None = None, transfer: bool = False
) -> None:
    for m in range(MODELS):
        dp = {"epsilon": epsilon + m, "delta": 1e-5, "noise_multiplier": 1.1} if epsilon else None
        calibration = {"temperature": temperature} if temperature else None
        save_json(
            run.meta(m),
            {"test_accuracy": 0.5 + m / 100, "train_seconds": 1.0, "dp": dp,
             "calibration": calibration, "transfer": {"arch": "cnn"} if transfer else None},
        )  # fmt: skip


def test_report_shows_defences_and_epsilon_per_model(tmp_path):
    run = write_run(tmp_path / "run")
    write_meta(run, epsilon=2.0, temperature=1.7, transfer=True)
    page = write_report(run.root).read_text()
    section = page[page.index("Training and defences") : page.index("<h2>Run")]
    assert "DP-SGD (σ = 1.1), temperature scaling, transfer learning (cnn features)" in section
    # ε: the largest over the 4 targets (2 + 3); test accuracy: their mean
    assert "<td>5</td>" in section
    assert "51.50%" in section


def test_compare_gives_the_privacy_utility_table(tmp_path):
    baseline, private = write_run(tmp_path / "baseline"), write_run(tmp_path / "dp", seed=1)
    write_meta(baseline, epsilon=None)
    write_meta(private, epsilon=3.0)
    compare_runs([baseline.root, private.root], tmp_path / "cmp")
    table = pd.read_parquet(tmp_path / "cmp" / "privacy_utility.parquet").set_index("run")
    assert np.isnan(table.loc["baseline", "epsilon"]) and table.loc["dp", "epsilon"] == 6.0
    assert table.loc["baseline", "defences"] == "none"
    assert table.loc["dp", "test_split_accuracy"] == pytest.approx(0.515)
    # test accuracy: on the targets' non-members, from their logits
    logits, keep = [np.load(private.logits(t))[:, 0] for t in range(TARGETS)], np.load(private.keep)
    on_non_members = [
        np.mean(np.argmax(z[~keep[t]], axis=1) == np.load(private.labels)[~keep[t]])
        for t, z in enumerate(logits)
    ]
    assert table.loc["dp", "test_accuracy"] == pytest.approx(np.mean(on_non_members))
    # ECE of the targets on their non-members, from their logits, as the calibration table has it
    assert 0 < table.loc["dp", "ece"] < 1


def test_report_includes_single_point_results(tmp_path):
    run = write_run(tmp_path / "run")
    folder = run.root / "single_point"
    rows = [{"rank": 1, "index": 17, "label": 2, "power_empirical": 0.8}]
    save_json(folder / "summary.json", {"config": {"alpha": 0.05}, "records": rows})
    Image.new("RGB", (4, 4)).save(folder / "hist_17.png")
    page = write_report(run.root).read_text()
    section = page[page.index("Single-point audit") :]
    assert "α = 0.05" in section and "<td>17</td>" in section
    assert section.count("data:image/png;base64,") >= 1
    with pytest.raises(MiakitError, match="miakit single-point"):
        write_report(run.root, single_point=[tmp_path / "nowhere"])


def test_report_of_a_partly_scored_pool_names_pool_records(tmp_path):
    """A disjoint split scores some records only: the report's records are pool indices."""
    run = write_run(tmp_path / "run")
    evaluated = np.zeros(RECORDS, dtype=bool)
    evaluated[::2] = True  # records 0, 2, 4, … are scored; the exposed ones are 0..9
    save_npy(run.eval_records, evaluated)
    page = write_report(run.root, images=synthetic_images()[evaluated]).read_text()
    vulnerable = page[page.index("Most vulnerable") :]
    leaders = re.findall(r"<tr>\s*<td>[1-5]</td>\s*<td>(\d+)</td>", vulnerable)
    # local (evaluated-record) indices would be of either parity; pool indices are even
    assert len(leaders) == 5 and all(int(r) % 2 == 0 for r in leaders)
    assert sum(int(r) < 10 for r in leaders) >= 3


def test_histogram_scales_spread_loss_and_heavy_tailed_scores():
    from miakit.report.figures import histogram_scale

    p = np.array([0.5, 0.9, 0.999, 1.0])
    phi, axis = histogram_scale("loss", np.log(p))
    assert axis.startswith("φ")
    assert phi[:3] == pytest.approx(np.log(p[:3] / (1 - p[:3])))
    assert np.isfinite(phi[3])  # p_y = 1 stays on the plot
    rng = np.random.default_rng(0)
    gaussian = rng.normal(size=10_000)
    assert histogram_scale("lira-offline", gaussian)[1] == "score"
    heavy = rng.standard_cauchy(size=10_000)
    scaled, axis = histogram_scale("lira-online", heavy)
    median = np.median(heavy)
    iqr = np.subtract(*np.percentile(heavy, [75, 25]))
    assert axis.startswith("asinh")
    assert scaled == pytest.approx(np.arcsinh((heavy - median) / iqr))


def test_verdict_shows_tabular_records_as_feature_rows(tmp_path):
    run = write_run(tmp_path / "run")
    features = np.random.default_rng(2).normal(size=(RECORDS, 20)).round(2)
    page = write_report(run.root, features=features).read_text()
    verdict = page[page.index("Verdict") : page.index("Attacks: mean over targets")]
    rows = re.findall(
        r"<tr><td>(\d+)</td><td>(\d+)</td><td>caught by [^<]+</td><td>([^<]+)</td>", verdict
    )
    assert rows, "no feature rows in the verdict"
    labels = np.load(run.labels)
    for record, label, shown in rows:
        assert int(label) == labels[int(record)]
        first = [float(v) for v in shown.split(" …")[0].split(", ")]
        assert first == pytest.approx(features[int(record)][: len(first)], abs=5e-3)
        assert "(20 features)" in shown


def test_digits_records_are_drawn_as_8_by_8_pictures():
    from miakit.data import load_pool

    pool = load_pool("digits")
    pictures = pool.pictures()
    assert pictures.shape == (pool.num_records, 8, 8, 1) and pictures.dtype == np.uint8
    first = pool.x[0].reshape(8, 8)
    assert pictures[0, :, :, 0] == pytest.approx(np.floor(first * 255 + 0.5), abs=0)
    assert pool.take(np.arange(3)).pictures().shape == (3, 8, 8, 1)
