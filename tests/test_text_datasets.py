"""Text records from a folder saved by `datasets.Dataset.save_to_disk`: the same pool as the
.jsonl of the same records, and one clear error for what is not a saved Dataset."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

datasets = pytest.importorskip("datasets")

from miakit import pipeline  # noqa: E402
from miakit.config import load_config  # noqa: E402
from miakit.data.user import load_user  # noqa: E402
from miakit.errors import MiakitError  # noqa: E402
from miakit.store import RunDir  # noqa: E402

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "text_lm.yaml"
TEXTS = ["Ana from Oslo likes tea 4", "my pin is 0042", "zwölf Boxkämpfer", "x"]


@pytest.fixture(autouse=True)
def _quiet():
    datasets.disable_progress_bars()
    yield
    datasets.enable_progress_bars()


def _save(folder: Path, columns: dict) -> Path:
    datasets.Dataset.from_dict(columns).save_to_disk(str(folder))
    return folder


@pytest.mark.parametrize("labels", [None, [0, 1, 1, 0]])
def test_a_saved_dataset_is_the_same_pool_as_its_jsonl(tmp_path, labels):
    columns = {"text": TEXTS} | ({"label": labels} if labels else {})
    saved = load_user(_save(tmp_path / "saved", columns))
    rows = [{"text": t} | ({"label": labels[i]} if labels else {}) for i, t in enumerate(TEXTS)]
    (tmp_path / "r.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    plain = load_user(tmp_path / "r.jsonl")
    assert saved.is_text and saved.name == "user:saved"
    np.testing.assert_array_equal(saved.x, plain.x)
    np.testing.assert_array_equal(saved.y, plain.y)
    assert saved.fingerprint() == plain.fingerprint()


def test_plan_reads_a_saved_dataset(tmp_path):
    folder = _save(tmp_path / "saved", {"text": [f"record number {i}" for i in range(12)]})
    config = load_config(CONFIG, [f"data.path={folder}", "split.num_models=4"])
    planned = pipeline.plan(config, RunDir(tmp_path / "run"), log=None)
    assert planned.pool.num_records == 12 and planned.pool.is_text


def _dataset_dict(tmp_path: Path) -> Path:
    folder = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": TEXTS})}).save_to_disk(
        str(folder)
    )
    return folder


def _state_naming(tmp_path: Path, name: str) -> Path:
    folder = _save(tmp_path / "saved", {"text": TEXTS})
    state = json.loads((folder / "state.json").read_text())
    state["_data_files"] = [{"filename": name}]
    (folder / "state.json").write_text(json.dumps(state))
    return folder


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_dataset_dict, r"dd is not a saved datasets.Dataset \(a DatasetDict: give one split"),
        (lambda p: _state_naming(p, "../other.arrow"), r"saved is not a saved datasets.Dataset"),
        (lambda p: _state_naming(p, "data.pkl"), r"saved is not a saved datasets.Dataset"),
        (lambda p: _save(p / "saved", {"words": TEXTS}), r"saved needs a string column 'text'"),
        (lambda p: _save(p / "saved", {"text": [1, 2]}), r"saved needs a string column 'text'"),
        (
            lambda p: _save(p / "saved", {"text": TEXTS, "label": [0, -1, 0, 0]}),
            r"record 1: 'label'",
        ),
        (lambda p: _save(p / "saved", {"text": ["a", ""]}), r"record 1: 'text' must be"),
    ],
)
def test_what_is_not_a_saved_text_dataset_gets_one_error_naming_the_folder(tmp_path, make, message):
    folder = make(tmp_path)
    with pytest.raises(MiakitError, match=message):
        load_user(folder)


def test_a_saved_dataset_without_the_text_extra_names_it(tmp_path, monkeypatch):
    """Without `datasets` installed, reading a saved Dataset is one error naming the extra."""
    folder = _save(tmp_path / "saved", {"text": TEXTS})
    monkeypatch.setitem(sys.modules, "datasets", None)  # import now fails
    with pytest.raises(MiakitError, match=r"needs the text extra \(pip install 'miakit\[text\]'\)"):
        load_user(folder)
