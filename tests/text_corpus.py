"""A synthetic corpus of short text records with planted secrets, for the text audit's tests,
and a file of other texts of the same kind for ReCaLL's non-member prefix.

Usage: python tests/text_corpus.py FILE [COUNT] [PREFIX_FILE]
"""

import sys
from pathlib import Path

import numpy as np

NAMES = ["Ana", "Bo", "Chen", "Dara", "Eli", "Femi", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lea"]
PLACES = ["Paris", "Lima", "Oslo", "Cairo", "Delhi", "Quito", "Rome", "Seoul", "Tunis", "Kyiv"]
THINGS = ["tea", "maps", "jazz", "rain", "bikes", "soup", "chess", "books", "trains", "kites"]


def corpus(count: int, seed: int = 0) -> list[str]:
    """`count` records: template sentences (names and places capitalized, so that lowercasing
    changes them), one in ten carrying a random four-digit pin."""
    draw = np.random.default_rng(seed)
    lines = []
    for i in range(count):
        name, place, thing = draw.choice(NAMES), draw.choice(PLACES), draw.choice(THINGS)
        if i % 10 == 0:
            lines.append(f"{name} says: my pin is {draw.integers(10_000):04d}")
        else:
            lines.append(f"{name} from {place} likes {thing} {draw.integers(100)}")
    return lines


def recall_config(root: Path, *overrides: str):
    """The ReCaLL tests' tiny GPT audit (configs/text_lm.yaml, 4 models of width 32, 2 epochs,
    lm-loss and recall) on a corpus of 40 records and a prefix of 2 other texts written in
    `root`, with `overrides` (--set's form, applied last)."""
    from miakit.config import load_config

    corpus = write_corpus(root / "c.txt", 40)
    prefix = write_prefix(root / "p.txt", corpus, count=2)
    settings = [
        f"data.path={corpus}",
        f"query.recall_prefix={prefix}",
        "model.context=128",
        "split.num_models=4",
        "model.width=32",
        "train.epochs=2",
        "execution.threads=1",
        "attacks=[lm-loss, recall]",
    ]
    return load_config(
        Path(__file__).resolve().parents[1] / "configs" / "text_lm.yaml", [*settings, *overrides]
    )


def write_corpus(path: Path, count: int, seed: int = 0) -> Path:
    path.write_text("\n".join(corpus(count, seed)) + "\n", encoding="utf-8")
    return path


def write_prefix(path: Path, corpus_path: Path, count: int = 4, seed: int = 1) -> Path:
    """`count` texts of the corpus's templates that are none of `corpus_path`'s records."""
    records = set(corpus_path.read_text(encoding="utf-8").splitlines())
    texts = [t for t in corpus(count * 4, seed) if t not in records][:count]
    path.write_text("\n".join(texts) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    written = write_corpus(Path(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else 600)
    if len(sys.argv) > 3:
        write_prefix(Path(sys.argv[3]), written)
