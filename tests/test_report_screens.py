"""The quickstart's report on the bundled model, opened in headless Chromium: it stands alone, and its screenshot
is the picture the README shows (`make screenshots` writes it to docs/img/)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .browser import open_report
from .conftest import call_main

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_quickstart_report_opens_standalone_and_gives_the_readme_its_picture(tmp_path, browser, capsys,
                                                                                 monkeypatch):
    monkeypatch.chdir(ROOT)
    r = call_main(capsys, "sequential", "--config", "configs/sequential/quickstart.yaml", "--out", str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    run = next(p for p in tmp_path.iterdir() if p.is_dir())
    assert f"report: {run / 'report.html'}" in r.stdout and "Accuracy matrix" in r.stdout
    shot = ROOT / "docs/img/report-sequential.png" if os.environ.get("FORGETLAB_SCREENSHOTS") else tmp_path / "shot.png"
    shown = open_report(browser, run / "report.html", screenshot=shot)
    assert len(shown["images"]) == 3  # the accuracy heatmap, the loss curve, the eigenvalue spectrum
    assert {"BWT", "plasticity", "bound"} <= set(shown["terms"])
    head = shot.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and int.from_bytes(head[16:20], "big") == 1200  # the viewport's width
    assert (ROOT / "docs/img/report-sequential.png").is_file(), "the README's picture: make screenshots"


@pytest.mark.slow
def test_the_console_on_the_bundled_model_learns_a_fact_and_answers_from_it(tmp_path, browser):
    """`forgetlab serve --learn` as the README shows it, in the browser: a stated fact, learned, then asked back; the
    screenshot is the README's picture of the console."""
    import json
    import time
    import urllib.request

    from forgetlab.config import OnlineConfig
    from forgetlab.model import load_base
    from forgetlab.online.learner import OnlineLearner
    from forgetlab.serve import create_app
    from forgetlab.sessions.holder import Loaded, ModelHolder

    from .test_serve import serving

    cfg = OnlineConfig.model_validate({"metrics_every": 1})
    holder = ModelHolder(lambda: Loaded(*load_base(cfg.model), "bundled", None, time.time()))
    learner = OnlineLearner(holder, cfg, tmp_path / "state")
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    with serving(create_app(holder, learner, runs=tmp_path / "runs")) as url:
        page.goto(url + "/")
        page.wait_for_selector("#learning-panel:not([hidden])")
        page.wait_for_function("document.activeElement.id === 'prompt'")  # ready: keys typed earlier are lost
        page.keyboard.type("My manager is Priya Velloso.")
        page.keyboard.press("Enter")
        page.wait_for_selector("#messages li.assistant[data-done]", timeout=120_000)
        deadline = time.time() + 600  # the stated turn learned, not only an empty queue at this moment
        while json.loads(urllib.request.urlopen(url + "/v1/learning", timeout=60).read())["turns_learned"] < 1:
            assert time.time() < deadline, "the stated fact was never learned"
            time.sleep(0.5)
        urllib.request.urlopen(urllib.request.Request(url + "/v1/learning/wait", method="POST"), timeout=600).read()
        page.click("#reset")  # a new conversation: the answer must come from the weights
        page.keyboard.type("Who do I report to?")
        page.keyboard.press("Enter")
        page.wait_for_selector("#messages li.assistant[data-done]", timeout=120_000)
        answer = page.locator("#messages li.assistant .answer").last.inner_text()
        page.locator("#memory tbody tr", has_text="Priya").wait_for(timeout=60_000)
        page.wait_for_function("Number(document.querySelector('#plots figure').dataset.points) >= 1", timeout=120_000)
        shot = ROOT / "docs/img/console.png" if os.environ.get("FORGETLAB_SCREENSHOTS") else tmp_path / "console.png"
        page.screenshot(path=str(shot))
    page.close()
    learner.wait()  # the last turn learned before the process may end (a torch thread cut off at exit aborts)
    assert "Priya" in answer, answer
    assert (ROOT / "docs/img/console.png").is_file(), "the README's picture: make screenshots"
