"""`forgetlab sweep` on a real local Ray instance with tiny random models: a grid runs, a failing point is isolated
and reported, a point's results equal running it alone, --resume reruns only what is missing; bad axes; the rank
table's arithmetic and the Pareto front by hand."""

from __future__ import annotations

import csv
import json
import shutil

import pytest

from .browser import open_report
from .conftest import call_main


def sweep_yaml(tmp_path, tiny_dir, axes: str) -> str:
    path = tmp_path / "sweep.yaml"
    path.write_text(f"""unlearn:
  model: {{name: {tiny_dir}}}
  general: {{enabled: false}}
  guard: {{enabled: false}}  # a random model has nothing to forget: every epoch runs, the last is kept
  train: {{epochs: 1, batch_size: 16}}
  rtt: {{enabled: true, lrs: [0.001], epochs: 1}}
axes:
{axes}
""")
    return str(path)


def read_rows(out):
    return {r["point"]: r for r in csv.DictReader((out / "sweep.csv").open())}


def test_a_grid_runs_on_ray_a_failing_point_is_isolated_points_match_running_alone_and_resume_reruns_what_is_missing(
        tiny_dir, tmp_path, capsys, monkeypatch, browser):
    monkeypatch.setenv("FORGETLAB_CACHE", str(tmp_path / "cache"))
    config = sweep_yaml(tmp_path, tiny_dir, f"  lora.rank: [1, 2]\n  model.name: [{tiny_dir}, {tmp_path}/no-such-model]")
    r = call_main(capsys, "sweep", "--config", config, "--out", str(tmp_path / "runs"), "--name", "grid",
                  "--cpus-per-run", "1")
    assert r.returncode == 1, r.stderr  # some points failed: the others finished, and the exit code says so
    assert "some point failed (status partial)" in r.stderr
    out = next((tmp_path / "runs").glob("*-grid"))
    assert json.loads((out / "sweep.json").read_text())["status"] == "partial"
    rows = read_rows(out)
    assert len(rows) == 4
    good = {k: v for k, v in rows.items() if "no-such-model" not in v["model.name"]}
    bad = {k: v for k, v in rows.items() if k not in good}
    assert len(good) == 2 and all(v["status"] == "complete" for v in good.values())
    for v in good.values():  # every point measured before/after and ran RTT
        assert 0 <= float(v["forget_before"]) <= 1 and 0 <= float(v["forget_after"]) <= 1
        assert v["recovery_rate"] != "" and v["rtt_original"] != "" and float(v["seconds"]) > 0
    assert {v["lora.rank"] for v in good.values()} == {"1", "2"}
    assert all(v["status"] == "failed" and "no-such-model" in v["error"] for v in bad.values())
    assert "failed" in r.stderr + r.stdout and "Recovery by LoRA rank" in r.stdout
    ranks = list(csv.DictReader((out / "recovery_vs_rank.csv").open()))
    assert sorted(int(x["lora_rank"]) for x in ranks) == [1, 2] and all(x["count"] == "1" for x in ranks)
    for x in ranks:  # the recovery epochs: the mean over the points that reached the threshold, and how many did
        point = next(v for v in good.values() if v["lora.rank"] == x["lora_rank"])
        for key in ("recovery_epoch", "recovery_epoch_abs"):
            assert x[f"{key}_count"] == ("1" if point[key] else "0")
            assert x[f"{key}_mean"] == (str(float(point[key])) if point[key] else "")
    assert (out / "report.html").is_file() and (out / "recovery_vs_rank.png").is_file() and (out / "pareto.png").is_file()
    assert open_report(browser, out / "report.html")["images"]

    # A point run alone (its config, as `forgetlab unlearn`) gives the numbers the sweep gave it.
    kept, removed = sorted(good)
    r = call_main(capsys, "unlearn", "--config", str(out / "configs" / f"{kept}.yaml"), "--out", str(tmp_path / "alone"))
    assert r.returncode == 0, r.stderr
    alone = json.loads(next((tmp_path / "alone").glob(f"*-{kept}")).joinpath("metrics.json").read_text())
    assert float(good[kept]["forget_after"]) == pytest.approx(alone["final"]["forget_ll"], abs=1e-5)
    assert float(good[kept]["retain_after"]) == pytest.approx(alone["final"]["retain_ll"], abs=1e-5)
    assert float(good[kept]["rtt_unlearned_rtt"]) == pytest.approx(alone["rtt"]["unlearned_rtt"], abs=1e-5)
    assert float(good[kept]["recovery_rate"]) == pytest.approx(alone["rtt"]["recovery_rate"], abs=1e-5)
    for key in ("forget_tr", "forget_prob", "utility"):  # the field's measures at the kept step, one column each
        assert float(good[kept][key]) == pytest.approx(alone["final"][key], abs=1e-5), key

    # Remove one finished point: --resume reruns it and the failed ones, and reads the other back untouched.
    kept_dir = good[kept]["run_dir"]
    shutil.rmtree(good[removed]["run_dir"])
    r = call_main(capsys, "sweep", "--resume", str(out), "--cpus-per-run", "1")
    assert r.returncode == 1, r.stderr
    state = json.loads((out / "sweep.json").read_text())
    by_point = {p["point"]: p for p in state["points"]}
    assert by_point[kept]["seconds"] is None and by_point[kept]["run_dir"] == kept_dir  # not rerun
    assert by_point[removed]["status"] == "complete" and by_point[removed]["seconds"] > 0  # rerun
    assert by_point[removed]["forget_after"] == pytest.approx(float(good[removed]["forget_after"]), abs=1e-5)
    assert by_point[removed]["recovery_rate"] == pytest.approx(float(good[removed]["recovery_rate"]), abs=1e-5)
    assert all(by_point[k]["status"] == "failed" for k in bad)
    assert len([p for p in (out / "runs").iterdir() if p.is_dir()]) == 2  # a model that fails to load makes no run
    from forgetlab.runs import list_runs

    assert [r["status"] for r in list_runs(tmp_path / "runs") if r["kind"] == "sweep"] == ["partial"]


@pytest.mark.parametrize("args, message", [
    (["--axis", "lora.rnk=1,2"], "unknown key 'lora.rnk'; did you mean lora.rank"),
    (["--axis", "lora.rank="], "lora.rank has no values"),
    (["--axis", "lora.rank=1,big"], "point lora.rank=big: lora.rank"),
    (["--axis", "method.name=gd,nope"], "unknown unlearning method 'nope'"),
    (["--axis", "forget=missing.jsonl"], "--forget missing.jsonl: file not found"),
    (["--axis", "lora.rank=1,1"], "lora.rank lists a value twice"),
    (["--config", "nope.yaml"], "config file nope.yaml not found"),
    ([], "nothing to sweep"),
    (["--axis", "lora.rank=1", "--cpus-per-run", "64"], "--cpus-per-run 64: this machine has"),
    (["--resume", "."], "not a sweep directory"),
    (["--axis", "lora.rank=1", "--address", "127.0.0.1:1"], "--address 127.0.0.1:1: nothing answers there"),
])
def test_bad_sweep_input_is_one_line_exit_2_and_writes_nothing(args, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = call_main(capsys, "sweep", "--out", str(tmp_path / "runs"), *args) if "--resume" not in args else \
        call_main(capsys, "sweep", *args)
    assert r.returncode == 2, r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "runs").exists()


def test_rank_table_and_pareto_front_by_hand():
    from forgetlab.recipes.sweep import by_rank, pareto_front, point_name, point_names

    rows = [{"point": "a", "status": "complete", "method_name": "gd", "lora_rank": 8, "recovery_rate": 0.5,
             "recovered_share": 0.2, "forget_after": 0.1, "retain_after": 0.9, "general_after": 0.8},
            {"point": "b", "status": "complete", "method_name": "gd", "lora_rank": 8, "recovery_rate": 0.7,
             "recovered_share": 0.4, "forget_after": 0.3, "retain_after": 1.0, "general_after": 0.8},
            {"point": "c", "status": "complete", "method_name": "gd", "lora_rank": 0, "recovery_rate": 0.9,
             "recovered_share": 0.6, "forget_after": 0.2, "retain_after": 0.8, "general_after": 0.7},
            {"point": "d", "status": "failed", "method_name": "gd", "lora_rank": 1}]
    table = by_rank(rows)
    assert [(r["lora_rank"], r["count"]) for r in table] == [(8, 2), (0, 1)]  # full weights after the LoRA ranks
    assert table[0]["recovery_rate_mean"] == pytest.approx(0.6)
    assert table[0]["recovery_rate_std"] == pytest.approx(0.1414213, abs=1e-6)  # sample std of 0.5, 0.7
    assert table[1]["recovery_rate_std"] is None
    assert sorted(r["point"] for r in pareto_front(rows)) == ["a", "b"]  # c is beaten by a on both counts
    assert point_name({"method.name": "gd", "lora.rank": 8, "seed": 1}) == "gd-rank8-seed1"
    assert point_names([{"forget": "a/x.jsonl"}, {"forget": "b/x.jsonl"}]) == ["forgetx.jsonl-1", "forgetx.jsonl-2"]


def test_log_spaced_axis_values_by_hand(tmp_path, capsys):
    from forgetlab.config import SweepConfig

    # 1e-6 · 100^(i/4): 1e-6, 10^-5.5 = 3.16e-6, 1e-5, 3.16e-5, 1e-4
    assert SweepConfig(axes={"lr": {"logspace": [1e-6, 1e-4, 5]}}).axes["lr"] == [1e-6, 3.16e-6, 1e-5, 3.16e-5, 1e-4]
    assert SweepConfig(axes={"lr": {"logspace": [1e-4, 1e-3, 2]}}).axes["lr"] == [1e-4, 1e-3]
    good = tmp_path / "good.yaml"  # YAML reads 1e-6 (no dot) as a string: still the number it spells
    good.write_text("axes:\n  lr: {logspace: [1e-6, 1e-4, 5]}\n")
    from forgetlab.config import read_yaml

    assert SweepConfig(**read_yaml(good)).axes["lr"] == [1e-6, 3.16e-6, 1e-5, 3.16e-5, 1e-4]
    bad = tmp_path / "bad.yaml"
    bad.write_text("axes:\n  lr: {logspace: [0, 1e-4, 5]}\n")
    r = call_main(capsys, "sweep", "--config", str(bad), "--out", str(tmp_path / "runs"))
    assert r.returncode == 2 and "logspace takes [start, stop, count]" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()
