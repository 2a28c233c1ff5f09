"""The web console at `/`, driven in headless Chromium through Playwright against a real server (uvicorn on loopback,
tiny models): chat with a streamed answer, a fact learned and shown in memory, deleted, a plot that grows, a session
rolled back, a run's report opened, markup shown as text, phone width. Screenshots go to a folder (`make screenshots`
takes the README's from the bundled model: tests/test_report_screens.py)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from forgetlab.serve import create_app

from .conftest import call_main
from .test_online import tiny_learner
from .test_serve import serving

ROOT = Path(__file__).resolve().parents[1]


def get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("dialog", lambda dialog: dialog.accept())  # the confirmations of delete and rollback
    yield page
    page.close()


def test_chat_streams_learns_a_fact_shows_and_deletes_it_and_the_plots_grow(page, tokenizer, tmp_path):
    learner = tiny_learner(tokenizer, tmp_path / "state", metrics_every=1, update={"steps": 2})
    with serving(create_app(learner.holder, learner, runs=tmp_path / "runs")) as url:
        page.goto(url + "/")
        page.wait_for_selector("#learning-panel:not([hidden])")
        page.wait_for_function("document.activeElement.id === 'prompt'")  # ready to type
        assert page.locator("#plots figure").first.get_attribute("data-points") == "0"

        page.keyboard.type("My dog's name is Biscotti.")
        page.keyboard.press("Enter")  # Enter sends
        page.wait_for_selector("#messages li.assistant[data-done]")
        meta = page.locator("#messages li.assistant .meta").last.inner_text()
        assert "the base model" in meta and "turn 1" in meta
        assert get(url + "/v1/learning")["turns"] == 1

        row = page.locator("#memory tbody tr", has_text="Biscotti")
        row.wait_for(timeout=60_000)  # learned in the background, shown on the next refresh
        assert "pet" in row.inner_text()
        page.fill("#memory-search", "bisc")  # search: case-insensitive, over the fact and its relation
        assert page.locator("#memory tbody tr").count() == 1
        page.fill("#memory-search", "no such fact")
        assert page.locator("#memory tbody tr").count() == 0
        page.fill("#memory-search", "")
        page.wait_for_function("document.querySelector('#plots figure').dataset.points === '1'", timeout=60_000)
        assert "turns learned" in page.locator("#learning").inner_text()
        assert "loss" in page.locator("#learning").inner_text()  # the last update's loss and time
        page.screenshot(path=str(tmp_path / "console-tiny.png"))

        # Answers without learning: the switch, then the turn is not learned from.
        page.uncheck("#learn")
        page.fill("#prompt", "What is my dog's name?")
        page.click("#send")
        page.locator("#messages li.assistant[data-done]").nth(1).wait_for()
        assert "not learned from" in page.locator("#messages li.assistant .meta").last.inner_text()
        assert get(url + "/v1/learning")["turns"] == 1

        fid = get(url + "/v1/memory")["data"][0]["id"]
        row.locator("button.delete").click()  # confirmed by the dialog handler
        page.wait_for_selector(f"#memory tbody tr[data-id='{fid}']", state="detached", timeout=30_000)
        assert get(url + "/v1/memory")["data"] == []
    learner.wait()


def test_markup_in_a_fact_or_a_message_is_shown_as_text(page, tokenizer, tmp_path):
    learner = tiny_learner(tokenizer, tmp_path / "state", update={"steps": 1})
    with serving(create_app(learner.holder, learner, runs=tmp_path / "runs")) as url:
        page.goto(url + "/")
        page.wait_for_selector("#learning-panel:not([hidden])")
        page.fill("#prompt", "My password is <script>window.pwned=1</script><img src=x onerror=window.pwned=2>")
        page.keyboard.press("Enter")
        page.wait_for_selector("#messages li.assistant[data-done]")
        cell = page.locator("#memory tbody tr", has_text="<script>")
        cell.wait_for(timeout=60_000)
        assert "<script>window.pwned=1</script>" in cell.inner_text()
        assert "<script>" in page.locator("#messages li.user").inner_text()
        assert page.evaluate("window.pwned") is None
        assert page.locator("#memory img, #messages img, #messages script").count() == 0
    learner.wait()


@pytest.fixture(scope="module")
def assistant_and_runs(tiny_dir, tmp_path_factory):
    """An assistant with two sessions and a runs directory with one indexed run (tiny model)."""
    from forgetlab.config import SessionConfig
    from forgetlab.recipes.session import train_session
    from forgetlab.sessions.holder import ModelHolder
    from forgetlab.sessions.manage import loader
    from forgetlab.sessions.store import Store

    home = tmp_path_factory.mktemp("assistants")
    store = Store(home, "msu")
    cfg = SessionConfig.model_validate({"model": {"name": str(tiny_dir)}, "epochs": 1, "max_new_tokens": 2,
                                        "targets": ("q_proj",), "keep_epochs": 0})
    for name in ("cs_faq.json", "housing_faq.json"):
        train_session(store, cfg, str(ROOT / "examples/sessions" / name))
    runs = tmp_path_factory.mktemp("runs")
    return store, ModelHolder(loader(store)), runs


def test_sessions_roll_back_and_a_run_report_opens(page, assistant_and_runs, tiny_dir, capsys):
    store, holder, runs = assistant_and_runs
    r = call_main(capsys, "sequential", "--model", str(tiny_dir), "--out", str(runs), "--task", "facts:people",
                  "--epochs", "1", "--no-landscape", "--set", "data.facts.entities=2", "--set", "general.enabled=false")
    assert r.returncode == 0, r.stderr
    with serving(create_app(holder, stores={"msu": store}, runs=runs)) as url:
        page.goto(url + "/")
        page.wait_for_selector("#sessions-panel:not([hidden]) #sessions tr.active")
        assert page.locator("#learning-panel").is_hidden()  # no --learn: no learning panels
        assert page.locator("#sessions tr.active td").first.inner_text() == "2"
        assert page.locator("#retention tbody tr").count() == 3  # before, after 1, after 2
        page.click("button.rollback[data-session='1']")  # confirmed by the dialog handler
        page.wait_for_function("document.querySelector('#sessions tr.active td').textContent === '1'")
        assert get(url + "/health")["session"] == 1 and store.info()["active"] == 1
        page.wait_for_function("document.querySelector('#serving').textContent.includes('session 1')")

        page.click("button.open-report")
        frame = page.frame_locator("#report")
        frame.locator("h1", has_text="forgetlab sequential").wait_for()  # the run's own page, inside the console
        assert frame.locator("h2", has_text="Settings").count() == 1
        page.screenshot(path=str(runs / "console-sessions.png"), full_page=True)

        page.set_viewport_size({"width": 390, "height": 844})  # a phone: one column, nothing wider than the screen
        page.reload()
        page.wait_for_selector("#sessions tr.active")
        assert page.evaluate("document.querySelector('main').scrollWidth") <= 390
        box = page.locator("#chat-panel").bounding_box()
        assert box["width"] <= 390 and box["x"] >= 0


def test_the_console_endpoints_answer_scripts_and_refuse_what_they_must(tokenizer, tmp_path):
    learner = tiny_learner(tokenizer, tmp_path / "state", update={"steps": 1})
    with serving(create_app(learner.holder, learner, runs=tmp_path / "runs")) as url:
        assert get(url + "/v1/runs") == {"object": "list", "root": str(tmp_path / "runs"), "data": []}
        assert get(url + "/v1/learning/history")["metrics"] == []
        for path, code in (("/v1/sessions/tiny", 404), ("/v1/sessions/nobody", 404), ("/v1/runs/x/report", 404),
                           ("/v1/runs/..%2F..%2Fetc/report", 404), ("/console/../serve.py", 404)):
            try:
                urllib.request.urlopen(url + path, timeout=30)
                raise AssertionError(path)
            except urllib.error.HTTPError as e:
                assert e.code == code, path
        page = urllib.request.urlopen(url + "/", timeout=30).read().decode()
        assert "/console/console.js" in page and "http" not in page.replace("http-equiv", "")  # nothing from elsewhere
