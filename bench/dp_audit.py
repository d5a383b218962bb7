"""ε lower bounds against the accountant's ε: configs/dp_audit_digits.yaml (or --config) without
DP and with DP-SGD at ε = 1, 4 and 8, one run each (plan → train → query → attack → audit-dp).

Prints, per setting and attack, the accountant's ε, the one-run bound (all targets, Bonferroni),
the many-run bound (pooled guesses), the threshold ε and μ that assume independent trials, and
the run time. Usage:
python bench/dp_audit.py [--config FILE] [--epsilons 1 4 8] [--seeds 0] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from machine import header

from miakit import pipeline
from miakit.config import load_config
from miakit.store import RunDir

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "dp_audit_digits.yaml"


def one_setting(path: Path, overrides: list[str]) -> tuple[dict, float]:
    config = load_config(path, overrides)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as root:
        run = RunDir(root)
        planned = pipeline.plan(config, run)
        pipeline.train(planned, run)
        pipeline.query(planned, run)
        pipeline.attack(run, config)
        result = pipeline.audit_dp(run, config)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, default=CONFIG)
    parser.add_argument("--epsilons", type=float, nargs="*", default=[1.0, 4.0, 8.0])
    parser.add_argument("--seeds", type=int, nargs="*", default=[0])
    parser.add_argument("--no-baseline", action="store_true", help="skip the non-private run")
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    print(header("dp_audit.py"))
    settings = [] if args.no_baseline else [("none", [])]
    settings += [
        (f"{eps:g}", ["defences.dp.enabled=true", f"defences.dp.target_epsilon={eps}"])
        for eps in args.epsilons
    ]
    print(
        "| DP ε target | seed | attack | accountant ε | one-run ε̂ | many-run ε̂ "
        "| ε̂, μ̂ (independent trials) | s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, dp in settings:
        for seed in args.seeds:
            result, seconds = one_setting(args.config, [*dp, f"seed={seed}", *args.overrides])
            acc = result["accountant_epsilon"]
            for name, figures in result["attacks"].items():
                many = figures.get("many_runs") or {}
                indep = many.get("independent_trials") or {}
                nan = float("nan")
                print(
                    f"| {label} | {seed} | {name} | {'–' if acc is None else f'{acc:.2f}'} | "
                    f"{figures['one_run']['epsilon_lower']:.2f} | "
                    f"{many.get('epsilon_lower', nan):.2f} | "
                    f"{indep.get('epsilon_lower', nan):.2f}, {indep.get('mu_lower', nan):.2f} | "
                    f"{seconds:.0f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
