"""The all-targets engine against straightforward per-target implementations written here (loops
over targets, records and augmentations, float64): ties, records with 0 or 1 IN/OUT reference,
A = 1 and A = 18, and query-only records."""

import warnings

import numpy as np
import pytest
from scipy.stats import norm

from miakit.attacks import make_attack
from miakit.attacks.engine import Fitted, Layout, SideFit, merge_served, reference_use
from miakit.errors import MiakitError
from miakit.signals import Signals

from .attack_inputs import chosen_references
from .synthetic import balanced_keep_matrix, binary_logits_from_log_odds

LIRA = ["lira-online", "lira-online-fixed", "lira-offline", "lira-offline-fixed"]
pytestmark = [pytest.mark.attack(name) for name in LIRA]

MODELS, RECORDS = 8, 40


def tied_case(augmentations, seed=0, queries=0):
    """φ on a grid of 0.5 (many ties), one record whose φ is the same for every model, and
    records with few IN or OUT models: record 0 is IN only for model 2, record 1 for models 2
    and 5; record 2 is OUT only for model 4, record 3 for models 4 and 6."""
    rng = np.random.default_rng(seed)
    keep = balanced_keep_matrix(MODELS, RECORDS, seed)
    keep[:, 0] = np.isin(np.arange(MODELS), [2])
    keep[:, 1] = np.isin(np.arange(MODELS), [2, 5])
    keep[:, 2] = ~np.isin(np.arange(MODELS), [4])
    keep[:, 3] = ~np.isin(np.arange(MODELS), [4, 6])
    phi = rng.normal(0, 1.5, (1, RECORDS, 1)) + np.where(keep[..., None], 1.0, 0.0)
    phi = np.round(2 * (phi + rng.normal(0, 1, (MODELS, RECORDS, augmentations)))) / 2
    phi[:, 5, 0] = 1.5
    total = RECORDS + queries
    if queries:
        phi = np.concatenate(
            [phi, np.round(2 * rng.normal(0, 2, (MODELS, queries, augmentations))) / 2], axis=1
        )
        keep = np.concatenate([keep, np.zeros((MODELS, queries), dtype=bool)], axis=1)
    signals = Signals(
        list(binary_logits_from_log_odds(phi)),
        np.ones(total, dtype=np.int64),
        keep,
        queries=queries,
    )
    return signals, phi, keep


def global_std(phi, keep, refs, member, fit):
    values = [
        phi[m, n, a]
        for m in refs
        for n in range(fit)
        for a in range(phi.shape[2])
        if keep[m, n] == member
    ]
    std = np.std(values) if len(values) > 1 else 0.0
    return std if std > 0 else 1.0


def gaussian(values, center, fallback, fixed=None):
    mu = np.median(values) if center == "median" else np.mean(values)
    if fixed is not None:
        return mu, fixed
    if len(values) < 2 or len(set(values)) == 1:
        return mu, fallback
    return mu, np.std(values)


def lira_per_target(
    variant, phi, keep, target, design, scored, center="median", tail="one-sided", queries=0,
    counts="equal",
):  # fmt: skip
    """One target against the reference models of `design` (all but the target: it may be one
    of them), every record and augmentation in loops; `counts`: `reference_counts`."""
    fit = phi.shape[1] - queries
    online, fixed = variant.startswith("lira-online"), variant.endswith("fixed")
    refs = [m for m in design if m != target]
    sides = ("IN", "OUT") if online else ("OUT",)
    g_in = global_std(phi, keep, refs, True, fit)
    g_out = global_std(phi, keep, refs, False, fit)
    fixed_sd = (g_in if online else g_out) if fixed else None
    out = np.full(phi.shape[1], np.nan)
    shifts, sds = [], []
    for n in range(fit):
        if not scored[n]:
            continue
        terms = []
        use = chosen_references(keep, n, target, design, sides, counts)
        for a in range(phi.shape[2]):
            x = phi[target, n, a]
            ins = [phi[m, n, a] for m in use["IN"]]
            outs = [phi[m, n, a] for m in use["OUT"]]
            mu_out, sd_out = gaussian(outs, center, g_out, fixed_sd)
            if online:
                mu_in, sd_in = gaussian(ins, center, g_in, fixed_sd)
                shifts.append(mu_in - mu_out)
                sds.append(sd_in)
                terms.append(norm.logpdf(x, mu_in, sd_in) - norm.logpdf(x, mu_out, sd_out))
            elif tail == "one-sided":
                terms.append(norm.logcdf(x, mu_out, sd_out))
            else:
                terms.append(-norm.logpdf(x, mu_out, sd_out))
        out[n] = np.mean(terms)
    for n in range(fit, phi.shape[1]):  # query-only: the IN Gaussian is the pooled one
        terms = []
        for a in range(phi.shape[2]):
            x = phi[target, n, a]
            outs = [phi[m, n, a] for m in refs]
            mu_out, sd_out = gaussian(outs, center, g_out, fixed_sd)
            if online:
                sd_in = sd_out if fixed else np.mean(sds)
                mu_in = mu_out + np.mean(shifts)
                terms.append(norm.logpdf(x, mu_in, sd_in) - norm.logpdf(x, mu_out, sd_out))
            elif tail == "one-sided":
                terms.append(norm.logcdf(x, mu_out, sd_out))
            else:
                terms.append(-norm.logpdf(x, mu_out, sd_out))
        out[n] = np.mean(terms)
    return out


def scorable(variant, total, counts="equal"):
    """Records every target can be scored on: online needs an IN and an OUT reference, offline
    an OUT one (record 0 has no IN reference for target 2, record 2 no OUT one for target 4);
    with equal counts as many of each side as the smaller has, so offline too needs an IN one."""
    scored = np.ones(total, dtype=bool)
    scored[2] = False
    if variant.startswith("lira-online") or counts == "equal":
        scored[0] = False
    return scored


@pytest.mark.parametrize(
    ("variant", "options"),
    [(v, {}) for v in LIRA]
    + [(v, {"center": "mean"}) for v in LIRA]
    + [(v, {"offline_tail": "two-sided"}) for v in LIRA if v.startswith("lira-offline")],
)
@pytest.mark.parametrize("augmentations", [1, 18])
@pytest.mark.parametrize("counts", ["equal", "all"])
def test_lira_all_targets_match_per_target_loops(variant, augmentations, options, counts):
    signals, phi, keep = tied_case(augmentations)
    scored = scorable(variant, RECORDS, counts)
    targets = list(range(MODELS))
    attack = make_attack(variant, options | {"reference_counts": counts})
    got = attack.score_targets(signals, targets, None, scored)
    for t in targets:
        expected = lira_per_target(
            variant, phi, keep, t, range(MODELS), scored,
            options.get("center", "median"), options.get("offline_tail", "one-sided"),
            counts=counts,
        )  # fmt: skip
        np.testing.assert_allclose(got[t], expected, rtol=1e-10, atol=1e-10, equal_nan=True)


@pytest.mark.parametrize("variant", LIRA)
@pytest.mark.parametrize("counts", ["equal", "all"])
def test_lira_explicit_references_match_per_target_loops(variant, counts):
    """Targets 0, 2 and 6 are not among the references; 4 is, and is scored against the others."""
    signals, phi, keep = tied_case(3, seed=1)
    refs = [1, 3, 4, 5, 7]
    targets = [0, 2, 4, 6]
    sides = ("IN", "OUT") if variant.startswith("lira-online") else ("OUT",)
    # with these references, some records lack an IN or OUT one for some target
    scored = np.array(
        [
            all(min(len(chosen_references(keep, n, t, refs, sides, counts)[side])
                    for side in sides) > 0 for t in targets)
            for n in range(RECORDS)
        ]
    )  # fmt: skip
    assert 0 < scored.sum() < RECORDS
    attack = make_attack(variant, {"reference_counts": counts})
    got = attack.score_targets(signals, targets, refs, scored)
    for i, t in enumerate(targets):
        expected = lira_per_target(variant, phi, keep, t, refs, scored, counts=counts)
        np.testing.assert_allclose(got[i], expected, rtol=1e-10, atol=1e-10, equal_nan=True)


@pytest.mark.parametrize("variant", LIRA)
@pytest.mark.parametrize("counts", ["equal", "all"])
def test_lira_query_only_records_match_per_target_loops(variant, counts):
    signals, phi, keep = tied_case(2, queries=7)
    scored = scorable(variant, RECORDS + 7, counts)
    attack = make_attack(variant, {"reference_counts": counts})
    got = attack.score_targets(signals, [0, 4, 7], None, scored[:RECORDS])
    for i, t in enumerate([0, 4, 7]):
        expected = lira_per_target(
            variant, phi, keep, t, range(MODELS), scored, queries=7, counts=counts
        )
        np.testing.assert_allclose(got[i], expected, rtol=1e-10, atol=1e-10, equal_nan=True)


@pytest.mark.parametrize("variant", LIRA)
def test_lira_says_which_record_it_cannot_score(variant):
    signals, *_ = tied_case(1)
    online = variant.startswith("lira-online")
    # every reference: record 2 has no OUT reference for target 4 (its one OUT model) alone,
    # record 0 no IN one for target 2 alone
    attack = make_attack(variant, {"reference_counts": "all"})
    with pytest.raises(MiakitError, match=r"OUT reference.*record 2 has none for target model 4"):
        attack.score_targets(signals, [4], None)
    scored = np.arange(RECORDS) != 2
    if online:
        with pytest.raises(
            MiakitError, match=r"IN reference.*record 0 has none for target model 2"
        ):
            attack.score_targets(signals, [2], None, scored)
    else:  # offline needs no IN reference: target 2 is scored on record 0
        assert np.isfinite(attack.score_targets(signals, [2], None)).all()
    assert np.isfinite(attack.score_targets(signals, [3], None)).all()  # one of each suffices
    # equal counts: as many of each side as the target's smaller side has: on record 0 target
    # 2 has no IN reference, so none of either (offline too); target 3 has one of each everywhere
    attack = make_attack(variant)
    need = "IN reference and one OUT reference" if online else "OUT reference"
    with pytest.raises(MiakitError, match=rf"{need}.*record 0 has none for target model 2"):
        attack.score_targets(signals, [2], None, scored)
    assert np.isfinite(attack.score_targets(signals, [3], None)).all()


@pytest.mark.parametrize("augmentations", [1, 5])
def test_fitted_statistics_leave_out_each_row(augmentations):
    """Median, mean, std, trimmed mean, order statistics and counts of all rows but one, against
    NumPy on the remaining values, with ties and empty sides."""
    rng = np.random.default_rng(3)
    values = np.round(rng.normal(0, 2, (9, 30, augmentations)))
    use = rng.random((9, 30)) < 0.6
    use[:, 0] = False
    use[:, 1] = np.arange(9) == 4
    fitted = Fitted(values, use)
    rows = np.array([-1, *range(9)])
    own = np.concatenate([np.zeros((1, 30, augmentations)), values])
    view = fitted.without(rows, own)
    median, mean, std = view.median(), view.mean(), view.std()
    trimmed, at_most = view.trimmed_mean(0.2), fitted.at_most_own(values, np.arange(9))
    for r, n, a in np.ndindex(9, 30, augmentations):
        assert at_most[r, n, a] == np.sum(values[use[:, n], n, a] <= values[r, n, a])
    for i, row in enumerate(rows):
        for n in range(30):
            keep = [r for r in range(9) if use[r, n] and r != row]
            assert view.count[i, n] == len(keep)
            for a in range(augmentations):
                rest = np.sort(values[keep, n, a])
                if not keep:
                    continue
                assert median[i, n, a] == np.median(rest)
                np.testing.assert_allclose(mean[i, n, a], rest.mean(), atol=1e-12)
                np.testing.assert_allclose(std[i, n, a], rest.std(), atol=1e-12)
                cut = int(np.floor(0.2 * rest.size))
                np.testing.assert_allclose(
                    trimmed[i, n, a], rest[cut : rest.size - cut].mean(), atol=1e-12
                )
                if len(set(rest)) == 1:
                    assert std[i, n, a] == 0.0
                for k in range(rest.size):
                    assert view.kth(np.full((rows.size, 30), k))[i, n, a] == rest[k]


@pytest.mark.parametrize("sides", [("IN", "OUT"), ("OUT",)])
@pytest.mark.parametrize("augmentations", [1, 3])
def test_equal_counts_serve_every_target_the_first_of_its_smaller_side(sides, augmentations):
    """`reference_use` and `SideFit.views`: every (target, record) pair reads the first min(X, Y)
    of its references on each side, X and Y its IN and OUT counts (OUT alone, a target that is
    no reference: all Y), against `chosen_references` in loops, on keep columns whose counts vary
    (where one removal cannot serve) and targets inside and outside the references."""
    rng = np.random.default_rng(7)
    models, records = 9, 60
    keep = rng.random((models, records)) < rng.uniform(0.1, 0.9, records)
    keep[0, keep.all(axis=0)] = False  # every record OUT for a model
    values = np.round(rng.normal(0, 2, (models, records, augmentations)))
    signals = Signals(list(binary_logits_from_log_odds(values)), np.ones(records, int), keep)
    references, targets = range(7), [0, 3, 6, 7, 8]
    layout = Layout(signals, targets, references)
    block = np.arange(len(targets))
    own = values[layout.target_rows]
    selections = reference_use(keep[layout.rows], layout, sides, "equal")
    assert any(len(side) > 1 for side in selections)  # the case one removal cannot serve
    for side, chosen_side in zip(sides, selections, strict=True):
        fit = SideFit(values[layout.rows], chosen_side)
        stats = merge_served(
            [
                (serves, (view.count, view.median(), view.mean(), view.std()))
                for _, view, serves in fit.views(block, layout.drop[block], own)
            ]
        )
        for i, t in enumerate(targets):
            for n in range(records):
                chosen = chosen_references(keep, n, t, references, sides)[side]
                assert stats[0][i, n] == len(chosen), (t, n)
                if not chosen:
                    continue
                rest = values[chosen, n]
                np.testing.assert_array_equal(stats[1][i, n], np.median(rest, axis=0))
                np.testing.assert_allclose(stats[2][i, n], rest.mean(axis=0), atol=1e-12)
                np.testing.assert_allclose(stats[3][i, n], rest.std(axis=0), atol=1e-12)


@pytest.mark.attack("attack-r")
@pytest.mark.attack("rmia-offline")
def test_disjoint_split_needs_references_only_for_scored_records(tmp_path):
    """Issue 17, item 4: shadow-part records that no target is scored on may lack OUT references
    (here record 39, among others, is IN for every shadow); `miakit attack` scores the target
    part alone."""
    import json

    from typer.testing import CliRunner

    from miakit.cli import app
    from miakit.store import RunDir

    rng = np.random.default_rng(4)
    models, records = 6, 40
    target_part = np.arange(records) < 20
    keep = np.zeros((models, records), dtype=bool)
    for t in (0, 1):
        keep[t, rng.choice(20, 10, replace=False)] = True
    for s in range(2, models):
        keep[s, 20 + rng.choice(20, 10, replace=False)] = True
    keep[2:, 39] = True  # record 39 (shadow part) has no OUT reference
    keep[0, 39] = False
    phi = rng.normal(0, 1, (models, records, 1)) + keep[..., None]
    run = RunDir(tmp_path / "disjoint")
    run.root.mkdir()
    np.save(run.keep, keep)
    np.save(run.labels, np.ones(records, dtype=np.int64))
    np.save(run.eval_records, target_part)
    run.split.write_text(json.dumps({"targets": [0, 1], "references": [2, 3, 4, 5]}))
    for m in range(models):
        run.model_dir(m).mkdir(parents=True)
        np.save(run.logits(m), binary_logits_from_log_odds(phi[m]))
    attacks = "lira-offline,attack-r,rmia-offline"
    result = CliRunner().invoke(app, ["attack", str(run.root), "--attacks", attacks])
    assert result.exit_code == 0, result.output
    scores = np.load(run.scores("lira-offline"))
    for i, t in enumerate([0, 1]):
        expected = lira_per_target("lira-offline", phi, keep, t, [2, 3, 4, 5], target_part)
        np.testing.assert_allclose(scores[i], expected, rtol=1e-10, equal_nan=True)
    for name in attacks.split(","):
        scores = np.load(run.scores(name))
        assert np.isfinite(scores[:, target_part]).all() and np.isnan(scores[:, ~target_part]).all()
    result = CliRunner().invoke(app, ["evaluate", str(run.root), "--attacks", attacks])
    assert result.exit_code == 0, result.output
    with pytest.raises(MiakitError, match=r"OUT reference.*record \d+ has none"):
        make_attack("lira-offline").score_targets(Signals.from_run(run), [0, 1], [2, 3, 4, 5])


def few_out_case(augmentations, seed=0):
    """Random logits; record 0 is OUT only for model 4, record 1 only for models 4 and 6."""
    from .attack_inputs import random_signals

    _, logits, labels, keep = random_signals(MODELS, 30, augmentations, seed=seed)
    keep[:, 0] = ~np.isin(np.arange(MODELS), [4])
    keep[:, 1] = ~np.isin(np.arange(MODELS), [4, 6])
    logits[:, 5:8] = np.round(logits[:, 5:8])  # tied losses
    return Signals.from_arrays(logits, labels, keep), logits, labels, keep


@pytest.mark.attack("attack-r")
@pytest.mark.parametrize("threshold", ["linear_itp", "logit_rescale", "min", "mean"])
@pytest.mark.parametrize("augmentations", [1, 18])
@pytest.mark.parametrize("counts", ["equal", "all"])
def test_attack_r_all_targets_match_per_target_loops(threshold, augmentations, counts):
    from .test_attack_reference import expected_attack_r

    signals, logits, labels, keep = few_out_case(augmentations)
    scored = np.arange(30) != 0  # record 0 has no OUT reference for target 4
    attack = make_attack("attack-r", {"threshold": threshold, "reference_counts": counts})
    got = attack.score_targets(signals, range(MODELS), None, scored)
    assert np.isnan(got[:, 0]).all()
    for t in range(MODELS):
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            expected = expected_attack_r(
                logits, labels, keep, t, range(MODELS), threshold, counts=counts
            )
        np.testing.assert_allclose(got[t, 1:], expected[1:], rtol=1e-9, atol=1e-12)
    with pytest.raises(MiakitError, match="record 0 has none for target model 4"):
        attack.score_targets(signals, [4], None)


@pytest.mark.attack("rmia")
@pytest.mark.attack("rmia-offline")
@pytest.mark.parametrize("name", ["rmia", "rmia-offline"])
@pytest.mark.parametrize("augmentations", [1, 18])
def test_rmia_all_targets_match_per_target_loops(name, augmentations):
    from .test_attack_rmia import brute_force

    signals, logits, labels, keep = few_out_case(augmentations, seed=1)
    offline = name == "rmia-offline"
    scored = np.arange(30) != 0 if offline else np.ones(30, dtype=bool)
    got = make_attack(name).score_targets(signals, range(MODELS), None, scored)
    for t in range(MODELS):
        refs = [m for m in range(MODELS) if m != t]
        population = np.flatnonzero(~keep[t] & scored)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            expected = brute_force(
                logits, labels, keep, t, refs, 0.3 if offline else None, population=population
            )
        np.testing.assert_allclose(got[t, scored], expected[scored], rtol=1e-12)
    if offline:
        with pytest.raises(MiakitError, match="record 0 has none for target model 4"):
            make_attack(name).score_targets(signals, [4], None)


@pytest.mark.attack("rmia")
@pytest.mark.attack("attack-p")
@pytest.mark.attack("lira-global")
@pytest.mark.parametrize(
    "name",
    [
        "lira-online",
        "lira-online-fixed",
        "lira-offline",
        "lira-global",
        "attack-r",
        "attack-p",
        "rmia",
        "rmia-offline",
    ],
)
def test_many_small_chunks_on_threads_give_the_same_scores(name, monkeypatch):
    """Chunks of a few records (and targets), handled on several threads, with query-only
    records: the same scores as one chunk on one thread (the global spread and the pooled IN
    Gaussian span all chunks)."""
    import miakit.signals
    from miakit.attacks import engine

    signals, *_ = tied_case(3, queries=5)
    scored = scorable("lira-online", RECORDS)
    monkeypatch.setattr(engine, "THREADS", 1)
    whole = make_attack(name).score_targets(signals, range(MODELS), None, scored)
    monkeypatch.setattr(miakit.signals, "CHUNK_BYTES", 8 * MODELS * 3 * 2 * 3)  # 3 records
    monkeypatch.setattr(engine, "THREADS", 3)
    # one target per RMIA fitting pass; fixed-variance LiRA's global spread in a pass of its own
    monkeypatch.setattr(engine, "KEPT_BYTES", 1)
    assert len(list(signals.record_chunks())) > 10
    chunked = make_attack(name).score_targets(signals, range(MODELS), None, scored)
    np.testing.assert_allclose(chunked, whole, rtol=1e-12, atol=1e-12, equal_nan=True)


@pytest.mark.parametrize("variant", [*LIRA, "lira-global"])
@pytest.mark.parametrize("augmentations", [1, 18])
def test_lira_fit_once_scores_any_query_records_as_the_per_target_loops(variant, augmentations):
    """Fit on the pool alone, then score two query sets from that fit: each equals the loops
    with that set appended, and the fit's pool scores equal the loops' pool scores; query 0
    repeats a pool record's φ under every model (ties with the pool)."""
    signals, phi, keep = tied_case(augmentations, queries=9)
    pool, logits, labels = signals.split_queries()
    assert pool.queries == 0 and pool.num_records == RECORDS
    scored = scorable(variant, RECORDS + 9)
    targets = [0, 4, 7]
    fit = make_attack(variant).fit(pool, targets, None, scored[:RECORDS])
    sets = [(slice(0, 4), logits), (slice(4, 9), logits)]
    for part, all_logits in sets:
        got = fit.score_queries([x[part] for x in all_logits], labels[part])
        assert got.shape == (len(targets), part.stop - part.start)
        queries = part.stop - part.start
        sub_phi = np.concatenate([phi[:, :RECORDS], phi[:, RECORDS:][:, part]], axis=1)
        sub_keep = keep[:, : RECORDS + queries]
        for i, t in enumerate(targets):
            if variant == "lira-global":
                expected = sub_phi[t].mean(axis=-1)
            else:
                expected = lira_per_target(
                    variant, sub_phi, sub_keep, t, range(MODELS), scored, queries=queries
                )
            np.testing.assert_allclose(got[i], expected[RECORDS:], rtol=1e-10, atol=1e-10)
            np.testing.assert_allclose(
                fit.scores[i], np.where(scored[:RECORDS], expected[:RECORDS], np.nan),
                rtol=1e-10, atol=1e-10, equal_nan=True,
            )  # fmt: skip


@pytest.mark.attack("lira-online")
@pytest.mark.parametrize(
    "name", ["lira-online", "lira-offline-fixed", "attack-r", "attack-p", "rmia", "loss", "shokri"]
)
def test_fit_then_score_queries_equals_scoring_with_the_queries_appended(name):
    """Every attack has `fit` (its own, or the bridge that appends the queries): the pool's
    scores and the queries' scores are those `score_targets` gives on the appended signals."""
    signals, *_ = tied_case(2, queries=6)
    pool, logits, labels = signals.split_queries()
    scored = scorable("lira-online", RECORDS)
    targets = [1, 6]
    whole = make_attack(name).score_targets(signals, targets, None, scored)
    fit = make_attack(name).fit(pool, targets, None, scored)
    queries = fit.score_queries(logits, labels)
    np.testing.assert_allclose(fit.scores, whole[:, :RECORDS], rtol=1e-12, equal_nan=True)
    np.testing.assert_allclose(queries, whole[:, RECORDS:], rtol=1e-12)


def test_split_queries_is_the_inverse_of_with_queries():
    signals, *_ = tied_case(3)
    rng = np.random.default_rng(5)
    logits = [rng.normal(size=(4, 3, 2)) for _ in range(MODELS)]
    labels = rng.integers(0, 2, 4)
    pool, back, back_labels = signals.with_queries(logits, labels).split_queries()
    assert pool.queries == 0 and pool.num_records == RECORDS
    np.testing.assert_array_equal(pool.keep, signals.keep)
    np.testing.assert_array_equal(back_labels, labels)
    for m in range(MODELS):
        np.testing.assert_array_equal(back[m], logits[m])
        np.testing.assert_array_equal(pool.logits[m][:], signals.logits[m][:])


@pytest.mark.attack("attack-r")
@pytest.mark.parametrize("threshold", ["linear_itp", "logit_rescale", "min"])
@pytest.mark.parametrize("augmentations", [1, 18])
def test_attack_r_fit_once_scores_query_records_as_the_per_target_loops(threshold, augmentations):
    """Fitted on the pool, Attack-R scores query-only records (every reference OUT, tied losses
    among them) as the loops do with the queries appended and the spread of the pool's OUT φ."""
    from .test_attack_reference import expected_attack_r

    pool, logits, labels, keep = few_out_case(augmentations)
    rng = np.random.default_rng(3)
    q_logits = np.round(rng.normal(0, 2, (MODELS, 5, augmentations, logits.shape[-1])))
    q_labels = rng.integers(0, logits.shape[-1], 5)
    scored = np.arange(30) != 0
    fit = make_attack("attack-r", {"threshold": threshold}).fit(pool, [2, 5], None, scored)
    got = fit.score_queries(list(q_logits), q_labels)
    all_logits = np.concatenate([logits, q_logits], axis=1)
    all_keep = np.concatenate([keep, np.zeros((MODELS, 5), dtype=bool)], axis=1)
    for i, t in enumerate([2, 5]):
        with np.errstate(invalid="ignore", divide="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            expected = expected_attack_r(
                all_logits, np.r_[labels, q_labels], all_keep, t, range(MODELS), threshold,
                pool=30,
            )  # fmt: skip
        np.testing.assert_allclose(got[i], expected[30:], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(fit.scores[i, 1:], expected[1:30], rtol=1e-9, atol=1e-12)
