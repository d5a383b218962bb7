"""Time the transformers-classifier audit (configs/text_classifier.yaml) stage by stage, and
each attack's throughput.

Writes the tiny local BERT and labelled corpus of examples/tiny_hf_model.py (200 records by
default), runs plan, train, query, then each attack of the config on its own (records scored per
second: targets × records / wall seconds), evaluate and report, and prints wall and CPU seconds
per stage. Usage: python bench/hf_audit.py [--records 200] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from machine import header

from miakit import pipeline
from miakit.config import load_config
from miakit.store import RunDir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
from tiny_hf_model import write_corpus, write_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}

    def timed(stage, fn, *fn_args):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn(*fn_args)
        timings[stage] = time.perf_counter() - start
        cpu[stage] = time.process_time() - start_cpu
        return result

    with tempfile.TemporaryDirectory() as root:
        corpus, folder = Path(root) / "corpus.jsonl", Path(root) / "tiny-bert"
        write_model(folder, [r["text"] for r in write_corpus(corpus, args.records)])
        overrides = [f"data.path={corpus}", f"model.arch=hf:{folder}", *args.overrides]
        config = load_config(ROOT / "configs" / "text_classifier.yaml", overrides)
        run = RunDir(Path(root) / "run")
        planned = timed("plan", pipeline.plan, config, run, None)
        config = planned.config
        timed("train", pipeline.train, planned, run)
        timed("query", pipeline.query, planned, run)
        for name in config.attacks:
            timed(f"attack {name}", pipeline.attack, run, config, [name])
        metrics = timed("evaluate", pipeline.evaluate, run, config)
        timed("report", pipeline.report, run)
    total, total_cpu = sum(timings.values()), sum(cpu.values())
    scored = len(planned.targets) * planned.pool.num_records
    attack_seconds = sum(s for stage, s in timings.items() if stage.startswith("attack"))
    print(header("hf_audit.py"))
    print(
        f"config: configs/text_classifier.yaml (tiny BERT, 2 layers, width 32), {args.records} "
        f"records of {planned.pool.x.shape[1]} "
        f"tokens, {config.split.num_models} models, {len(planned.targets)} targets, overrides "
        f"{args.overrides or 'none'}"
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


if __name__ == "__main__":
    main()
