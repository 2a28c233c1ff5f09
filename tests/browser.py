"""A report opened as a reader opens it: headless Chromium (through Playwright), with nothing reachable but the
page's own file, so a picture or style that is not inside the page shows up as missing."""

from __future__ import annotations

import shutil
from pathlib import Path

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def launch(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])


def open_report(browser, path: Path, screenshot: Path | None = None, full_page: bool = False) -> dict:
    """Load `path` offline and check what every report has: a title, a settings table at the top, a definitions box,
    every picture drawn from inside the page, no heading twice. Returns what the page showed; `screenshot` writes a
    PNG of it."""
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    asked = []

    def only_the_file(route):
        asked.append(route.request.url)
        return route.continue_() if route.request.url == path.resolve().as_uri() else route.abort()

    page.route("**/*", only_the_file)
    page.goto(path.resolve().as_uri())
    shown = {"title": page.title(), "headings": page.locator("h2").all_inner_texts(),
             "images": page.evaluate("Array.from(document.images).map(i => i.complete ? i.naturalWidth : 0)"),
             "settings": page.locator("h2:text-is('Settings') + table tr").count() - 1,
             "terms": page.locator("dl dt").all_inner_texts(), "asked": asked}
    if screenshot is not None:
        page.screenshot(path=str(screenshot), full_page=full_page)
    page.close()
    assert shown["title"].startswith("forgetlab "), shown["title"]
    assert shown["headings"][:1] == ["Settings"] and shown["settings"] > 0, shown["headings"]
    assert "Definitions" in shown["headings"] and shown["terms"], shown["headings"]
    assert len(shown["headings"]) == len(set(shown["headings"])), f"a heading twice: {shown['headings']}"
    assert all(w > 0 for w in shown["images"]), f"a picture that did not load: {shown['images']}"
    assert asked == [path.resolve().as_uri()], f"the page asked for more than itself: {asked}"
    return shown
