"""Config loading: errors name the key path and what was expected."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from miakit.config import AuditConfig, SinglePointConfig, load_config
from miakit.errors import MiakitError


def test_defaults_are_the_embedded_audit():
    cfg = load_config()
    assert (cfg.data.name, cfg.split.num_models, cfg.model.arch) == ("digits", 64, "mlp")
    assert cfg.evaluate.targets is None


def test_unknown_key_names_its_path(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lrr: 0.1\n")
    with pytest.raises(MiakitError, match=r"train\.lrr: unknown key"):
        load_config(path)


def test_wrong_type_names_path_and_value():
    with pytest.raises(MiakitError, match=r"train\.epochs: .*integer.*'many'"):
        load_config(None, ["train.epochs=many"])


def test_bad_value_names_the_bound():
    with pytest.raises(MiakitError, match=r"train\.lr: Input should be greater than 0"):
        load_config(None, ["train.lr=-1"])


def test_set_overrides_parse_yaml_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 3\n")
    cfg = load_config(path, ["train.epochs=7", "model.hidden=[16, 8]", "train.nesterov=true"])
    assert cfg.train.epochs == 7
    assert cfg.model.hidden == [16, 8]
    assert cfg.train.nesterov is True


def test_set_into_a_value_is_an_error(tmp_path):
    with pytest.raises(MiakitError, match=r"seed: Input should be a valid integer"):
        load_config(None, ["seed.x=1"])
    path = tmp_path / "c.yaml"
    path.write_text("seed: 3\n")
    with pytest.raises(MiakitError, match="seed is not a section"):
        load_config(path, ["seed.x=1"])


def test_malformed_set():
    with pytest.raises(MiakitError, match=r"KEY\.PATH=VALUE"):
        load_config(None, ["train.epochs"])


def test_top_level_must_be_mapping(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(MiakitError, match="mapping"):
        load_config(path)


CONFIGS = sorted((Path(__file__).resolve().parents[1] / "configs").glob("*.yaml"))


def test_digits_config_is_the_default_audit_with_traces_lt_iqr_and_batched_training():
    demo = load_config(CONFIGS[0].parent / "digits.yaml")
    assert demo.attacks == [*load_config().attacks, "lt-iqr"]
    assert demo.train.record_trace and demo.train.batched
    assert demo.execution.models_per_task > 1  # batched training stacks a task's models
    defaults = load_config(
        None,
        [
            f"attacks={demo.attacks}",
            "train.record_trace=true",
            "train.batched=true",
            f"execution.models_per_task={demo.execution.models_per_task}",
        ],
    )
    assert demo == defaults


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    schema = SinglePointConfig if path.name.startswith("single_point") else AuditConfig
    load_config(path, schema=schema)


def test_readme_lists_every_ready_config():
    readme = (CONFIGS[0].parents[1] / "README.md").read_text()
    listed = set(re.findall(r"`([a-z0-9_]+\.yaml)`", readme))
    assert {p.name for p in CONFIGS} <= listed


#: With `import torch` blocked, loads every shipped config and its content hashes.
WITHOUT_TORCH = """
import sys
from pathlib import Path
sys.modules["torch"] = None  # from here on, `import torch` raises ModuleNotFoundError
try:
    import torch
except ModuleNotFoundError:
    pass
else:
    sys.exit("torch was not blocked")
from miakit.config import AuditConfig, SinglePointConfig, load_config
paths = sorted(Path(sys.argv[1]).glob("*.yaml"))
for path in paths:
    single = path.name.startswith("single_point")
    config = load_config(path, schema=SinglePointConfig if single else AuditConfig)
    if config.model.arch.startswith("hf:"):  # its hash reads the model folder, made by the user
        from miakit.errors import MiakitError
        try:
            config.model.hash_inputs()
        except MiakitError as exc:
            assert "no folder" in str(exc), exc
        else:
            sys.exit("the hash of a missing hf model folder")
        continue
    config.model.hash_inputs()
    if not single:
        config.training_inputs()
        config.hash()
print("loaded", len(paths))
"""


def test_configs_load_where_torch_cannot_be_imported():
    env = {**os.environ, "PYTHONPATH": str(CONFIGS[0].parents[1] / "src")}
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, str(CONFIGS[0].parent)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.split() == ["loaded", str(len(CONFIGS))]
