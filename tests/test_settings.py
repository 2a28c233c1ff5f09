"""Each setting resolves once, when the config is built, and the YAML a run writes is the config that ran: a sweep
point gets what `forgetlab unlearn` gets for the same method, `--lr` reaches the run at any rank, `model.device`
reaches the online learner's model, and old key names still load."""

from __future__ import annotations

import json

import pytest
import yaml

from forgetlab.cli import build_parser
from forgetlab.cli.unlearn import unlearn_config
from forgetlab.config import SequentialConfig, SessionConfig, SweepConfig, UnlearnConfig, build_config, dump_yaml, read_yaml

from .conftest import call_main


def parsed(*argv):
    return build_parser().parse_args(list(argv))


@pytest.mark.parametrize("method", ["gd", "rmu", "npo"])
@pytest.mark.parametrize("rank", [8, 0])
def test_a_sweep_point_resolves_like_forgetlab_unlearn(method, rank):
    sweep = build_config(SweepConfig, {"unlearn": {"model": {"name": "m"}}, "axes": {"method": [method], "rank": [rank]}})
    point = sweep.point_config(sweep.points()[0])
    alone = unlearn_config(parsed("unlearn", "--method", method, "--lora-rank", str(rank), "--model", "m", "--rtt",
                                  "--save", "none"))
    assert point.model_dump(exclude={"run"}) == alone.model_dump(exclude={"run"})
    # the point's child reads the YAML dump: every key is then "set", and the settings must not change
    assert build_config(UnlearnConfig, yaml.safe_load(dump_yaml(point))) == point


def test_rmu_gets_its_own_defaults_wherever_it_is_named():
    for cfg in (build_config(UnlearnConfig, {"method": {"name": "rmu"}}),
                build_config(SweepConfig, {"axes": {"method": ["rmu"]}}).point_config({"method": "rmu"})):
        assert (cfg.train.epochs, cfg.train.batch_size, cfg.train.lr) == (6, 4, 2e-3)
    full = build_config(UnlearnConfig, {"method": {"name": "rmu"}, "lora": {"rank": 0}})
    assert full.train.lr == 5e-3
    # what the user sets wins over the method's default, from a file, a flag or --set alike
    assert build_config(UnlearnConfig, {"method": {"name": "rmu"}, "train": {"epochs": 2}}).train.epochs == 2
    assert build_config(UnlearnConfig, {}, {"method.name": "rmu"}, ["train.epochs=1"]).train.epochs == 1
    assert build_config(UnlearnConfig, {}).train.lr == 3e-4
    assert build_config(UnlearnConfig, {"lora": {"rank": 0}}).train.lr == 3e-5


def test_lr_flag_reaches_a_full_weight_run_whose_rank_comes_from_yaml(tiny_dir, tmp_path, capsys):
    config = tmp_path / "u.yaml"
    config.write_text(f"model: {{name: {tiny_dir}}}\nlora: {{rank: 0}}\nmethod: {{name: gd, layer: 1}}\n")
    r = call_main(capsys, "unlearn", "--config", str(config), "--lr", "1e-2", "--epochs", "1", "--save", "none",
                  "--set", "general.enabled=false", "--set", "train.batch_size=16", "--out", str(tmp_path / "runs"))
    assert r.returncode == 0, r.stderr
    run = next(p for p in (tmp_path / "runs").iterdir() if p.is_dir())
    assert json.loads((run / "metrics.json").read_text())["lr"] == 1e-2  # what the loop's optimizer was given
    written = read_yaml(run / "config.yaml")
    assert written["train"]["lr"] == 1e-2 and "full_lr" not in written
    assert build_config(UnlearnConfig, written).train.lr == 1e-2  # the written file runs the same rate again


class Loaded(Exception):
    pass


def test_model_device_reaches_the_online_learners_model(tmp_path, monkeypatch):
    from forgetlab.cli.chat import open_for
    from forgetlab.cli.common import online_config

    seen = []

    def load_base(cfg):  # the model itself is beside the point: stop once the holder asks for it
        seen.append(cfg)
        raise Loaded()

    monkeypatch.setattr("forgetlab.model.load_base", load_base)
    config = tmp_path / "online.yaml"
    config.write_text("online:\n  model: {device: cpu, dtype: float32}\n")
    for argv, device in ((["chat", "--learn", "--config", str(config)], "cpu"),
                         (["serve", "--learn", "--config", str(config)], "cpu"),
                         (["serve", "--learn", "--config", str(config), "--device", "mps"], "mps")):
        args = parsed(*argv)
        cfg = online_config(args, {"model.device": getattr(args, "device", None)})
        with pytest.raises(Loaded):
            open_for(args, cfg)
        assert (seen[-1].device, seen[-1].dtype) == (device, "float32")


def test_old_key_names_load_under_the_new_ones():
    cfg = build_config(SequentialConfig, {"train": {"method": "ewc"}, "lora": {"r": 8},
                                          "diagnostics": {"retention": False}})
    assert (cfg.strategy.name, cfg.lora.rank, cfg.general.enabled) == ("ewc", 8, False)
    assert build_config(SessionConfig, {"rank": 4}).lora.rank == 4
    assert build_config(UnlearnConfig, {"lora": {"rank": 0}, "full_lr": 1e-4}).train.lr == 1e-4
    with pytest.raises(Exception, match="keep only"):
        build_config(SequentialConfig, {"lora": {"r": 8, "rank": 4}})


def test_help_prints_list_defaults_in_a_form_set_takes_back():
    cfg = build_config(SequentialConfig, {}, sets=["lora.targets=q_proj,v_proj"])
    assert cfg.lora.targets == ("q_proj", "v_proj")
    assert "q_proj,k_proj,v_proj,o_proj" in build_parser()._subparsers._group_actions[0].choices["sequential"].epilog


def test_old_unlearn_run_configs_load_and_flags_still_win_over_a_file():
    # an unlearn config.yaml written before this release: train.method always there, full_lr beside train.lr
    old = {"lora": {"rank": 0}, "full_lr": 5e-5, "train": {"lr": 1e-3, "method": "naive"}, "rtt": {"enabled": True}}
    assert build_config(UnlearnConfig, old).train.lr == 5e-5
    assert build_config(UnlearnConfig, dict(old, lora={"rank": 8})).train.lr == 1e-3
    shipped = "configs/unlearn/known_facts.yaml"  # says rtt: true; --rtt and --set rtt.* go on top of it
    cfg = unlearn_config(parsed("unlearn", "--config", shipped, "--rtt", "--set", "rtt.epochs=2", "--lr", "5e-4"))
    assert (cfg.rtt.enabled, cfg.rtt.epochs, cfg.train.lr) == (True, 2, 5e-4)
    assert unlearn_config(parsed("unlearn", "--config", shipped, "--lora-rank", "0")).train.lr == 3e-5
