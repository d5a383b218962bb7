"""Time the transformers-classifier audit (configs/text_classifier.yaml) stage by stage, and
each attack's throughput.

Writes the tiny local BERT and labelled corpus of examples/tiny_hf_model.py (200 records by
default), runs plan, train, query, then each attack of the config on its own (records scored per
second: targets × records / wall seconds), evaluate and report, and prints wall and CPU seconds
per stage. Usage: python bench/hf_audit.py [--records 200] [--set key=value ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from text_audit import time_audit

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))
from tiny_hf_model import write_corpus, write_model  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200)
    parser.add_argument("--set", action="append", default=[], dest="overrides")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as root:
        corpus, folder = Path(root) / "corpus.jsonl", Path(root) / "tiny-bert"
        write_model(folder, [r["text"] for r in write_corpus(corpus, args.records)])
        overrides = [f"data.path={corpus}", f"model.arch=hf:{folder}", *args.overrides]
        described = "configs/text_classifier.yaml (tiny BERT, 2 layers, width 32)"
        time_audit(
            "hf_audit.py", ROOT / "configs" / "text_classifier.yaml", overrides,
            Path(root) / "run", described,
        )  # fmt: skip


if __name__ == "__main__":
    main()
