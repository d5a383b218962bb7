"""Time the text audit (configs/text_lm.yaml) stage by stage, and each attack's throughput.

Writes the synthetic corpus of tests/text_corpus.py (600 records by default) and, for a config
with a ReCaLL prefix, a file of other texts for it; runs plan, train, query, then each attack of
the config on its own (records scored per second: targets × records / wall seconds), evaluate,
the DP audit where the config plants canaries, and report, and prints wall and CPU seconds per
stage.
Usage: python bench/text_audit.py [--config configs/text_lm.yaml] [--records 600]
       [--set key=value ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from machine import StageTimer, header

from miakit import pipeline
from miakit.config import load_config
from miakit.privacy_audit import audit_dp
from miakit.store import RunDir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from text_corpus import write_corpus, write_prefix  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "text_lm.yaml")
    parser.add_argument("--records", type=int, default=600)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        corpus = write_corpus(Path(root) / "corpus.txt", args.records)
        overrides = [f"data.path={corpus}", *args.overrides]
        if load_config(args.config, overrides).query.recall_prefix is not None:
            prefix = write_prefix(Path(root) / "prefix.txt", corpus)
            overrides.insert(1, f"query.recall_prefix={prefix}")
        described = f"{args.config.resolve().relative_to(ROOT)}"
        time_audit("text_audit.py", args.config, overrides, Path(root) / "run", described)


def time_audit(
    script: str, config_path: Path, overrides: list[str], root: Path, described: str
) -> None:
    """Run the audit of `config_path` with `overrides` in `root` stage by stage (each attack on
    its own, the DP audit where the config plants canaries) and print each stage's wall and CPU
    seconds, the attacks' throughput, the mean AUCs and, with canaries, the ε bounds and
    exposure; `described` names the config in the printout, `script` in its header."""
    timed = StageTimer()
    run = RunDir(root)
    planned = timed("plan", pipeline.plan, load_config(config_path, overrides), run, None)
    config = planned.config
    timed("train", pipeline.train, planned, run)
    timed("query", pipeline.query, planned, run)
    for name in config.attacks:
        timed(f"attack {name}", pipeline.attack, run, config, [name])
    metrics = timed("evaluate", pipeline.evaluate, run, config)
    audit = None
    if config.dp_audit.canaries.count:
        audit = timed("audit-dp", audit_dp, run, config)
    timed("report", pipeline.report, run)
    timings, cpu = timed.wall, timed.cpu
    total, total_cpu = sum(timings.values()), sum(cpu.values())
    scored = len(planned.targets) * planned.pool.num_records
    attack_seconds = sum(s for stage, s in timings.items() if stage.startswith("attack"))
    print(header(script))
    print(
        f"config: {described}, {planned.pool.num_records} records of {planned.pool.x.shape[1]} "
        f"tokens, {config.split.num_models} models, {len(planned.targets)} targets, overrides "
        f"{overrides[1:] or 'none'}"
    )
    for stage, seconds in timings.items():
        rate = f"  {scored / seconds:9.0f} records/s" if stage.startswith("attack") else ""
        print(f"{stage:>24}: {seconds:7.2f} s  CPU {cpu[stage]:7.2f} s{rate}")
    print(f"{'total':>24}: {total:7.2f} s  CPU {total_cpu:7.2f} s")
    print(
        f"attack stage: {attack_seconds:.2f} s for {len(config.attacks)} attacks, "
        f"{scored * len(config.attacks) / attack_seconds:.0f} records/s (target × record × attack)"
    )
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    print(f"mean AUC: { {a: round(m['auc']['mean'], 3) for a, m in metrics.items()} }")
    if audit is not None:
        bounds = {a: round(f["one_run"]["epsilon_lower"], 3) for a, f in audit["attacks"].items()}
        print(f"one-run ε lower bounds on the canaries: {bounds}")
        if "exposure" in audit:
            found = audit["exposure"]
            print(
                f"exposure of the secret canaries (of {found['max_bits']:.2f} bits): mean "
                f"{found['members_mean']:.2f} bits where trained on, "
                f"{found['non_members_mean']:.2f} where not; one-run ε lower bound from "
                f"exposure {found['bounds']['one_run']['epsilon_lower']:.3f}"
            )


if __name__ == "__main__":
    main()
