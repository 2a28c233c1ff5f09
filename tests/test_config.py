"""Config validation, overrides, presets, and every shipped YAML."""

from pathlib import Path

import pytest
import yaml

from forgetlab.config import (
    CompareConfig,
    SequentialConfig,
    SessionCompareConfig,
    UnlearnConfig,
    build_config,
    dump_yaml,
    read_yaml,
)
from forgetlab.errors import UserError
from forgetlab.methods import STRATEGIES

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "configs").rglob("*.yaml"))


def test_there_are_shipped_configs():
    assert SHIPPED, "configs/ must ship at least one YAML"


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shipped_yaml_loads_and_names_its_command(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# forgetlab ") and str(path.relative_to(ROOT)) in first, first
    command = " ".join(first.split()[2:4]) if first.split()[2] == "session" else first.split()[2]
    if command == "session compare":
        cfg = build_config(SessionCompareConfig, read_yaml(path), source=str(path))
        assert all((ROOT / f).is_file() for f in cfg.files + cfg.heldout) and cfg.settings
        return
    if command == "unlearn":
        from forgetlab.unlearning import canonical

        cfg = build_config(UnlearnConfig, read_yaml(path), source=str(path))
        assert canonical(cfg.method.name) and (cfg.forget or cfg.learn_first)
        return
    if command == "sweep":
        from forgetlab.config import SweepConfig
        from forgetlab.unlearning import canonical

        cfg = build_config(SweepConfig, read_yaml(path), source=str(path))
        assert all(canonical(cfg.point_config(p).method.name) for p in cfg.points()) and len(cfg.points()) >= 3
        return
    cfg = build_config({"sequential": SequentialConfig, "compare": CompareConfig}[command], read_yaml(path),
                       source=str(path))
    assert cfg.tasks
    assert cfg.strategy.name in STRATEGIES and all(s.split(':')[0] in STRATEGIES for s in getattr(cfg, "strategies", ()))


def test_defaults_and_roundtrip():
    cfg = build_config(SequentialConfig, {})
    again = build_config(SequentialConfig, yaml.safe_load(dump_yaml(cfg)))
    assert again == cfg


def test_preset_fills_and_explicit_keys_win():
    cfg = build_config(SequentialConfig, {"lora": {"preset": "seft"}}, sets=["lora.rank=8"])
    assert cfg.lora.rank == 8 and cfg.lora.alpha == 128 and "down_proj" in cfg.lora.targets


def test_set_overrides_yaml_and_flags():
    cfg = build_config(SequentialConfig, {"train": {"lr": 1e-3}}, {"train.lr": 2e-3}, ["train.lr=5e-4"])
    assert cfg.train.lr == 5e-4


@pytest.mark.parametrize("sets,message", [
    (["train.lrr=1"], "unknown key 'train.lrr'"),
    (["lora.rank=0"], "lora.rank: Input should be greater than 0"),
    (["train.epochs=many"], "train.epochs"),
    (["lora.preset=huge"], "lora.preset"),
    (["train.lr"], "expected key=value"),
    (["tasks=[people]"], "source:name"),
])
def test_bad_settings_are_one_line_errors(sets, message):
    with pytest.raises(UserError, match=message) as err:
        build_config(SequentialConfig, {}, sets=sets)
    assert "\n" not in str(err.value)


def test_bad_yaml_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  lr: [1,\n")
    with pytest.raises(UserError, match="not valid YAML"):
        read_yaml(bad)
    with pytest.raises(UserError, match="not found"):
        read_yaml(tmp_path / "missing.yaml")


def test_compare_config_defaults_differ_only_where_documented():
    cfg = build_config(CompareConfig, {})
    assert cfg.landscape.enabled is False and build_config(SequentialConfig, {}).landscape.enabled is True
    assert "joint" in cfg.strategies and cfg.seeds == (0,)
