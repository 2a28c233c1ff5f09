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
