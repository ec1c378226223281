"""The HTML report: self-contained, and it renders with its figures in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from conftest import REPO
from twinscan.compare.align import Comparison, compare, confusion
from twinscan.compare.render_html import render_html, write_html
from twinscan.core.schema import conform
from twinscan.core.vocab import Engine, Technique
from twinscan.formats.nmap_xml_read import read_nmap_xml_file

FIXTURES = REPO / "fixtures" / "nmap"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def comparison() -> Comparison:
    nmap = conform(
        pd.concat([read_nmap_xml_file(FIXTURES / f"{n}.xml").frame for n in ("syn", "udp", "ack")])
    )
    native = nmap.assign(engine="native")
    native.loc[(native["port"] == 25) & (native["technique"] == "syn"), "state"] = "closed"
    native.loc[(native["port"] == 69) & (native["technique"] == "udp"), "state"] = "closed"
    native = conform(native)
    timings = {
        (Engine.NATIVE, Technique.SYN): 0.4,
        (Engine.NMAP, Technique.SYN): 1.3,
        (Engine.NATIVE, Technique.UDP): 2.0,
        (Engine.NMAP, Technique.UDP): 5.1,
        (Engine.NMAP, Technique.ACK): 1.1,  # native ACK time unknown: drawn as n/a
    }
    return compare(native, nmap, truth=native.assign(engine="truth"), timings=timings)


def test_report_is_self_contained(comparison: Comparison) -> None:
    html = render_html(comparison, title="compare <127.0.0.1> & co")
    assert not re.search(r"""(?:src|href)\s*=\s*["']?(?:https?:|//)""", html)
    assert "@import" not in html and "<script" not in html and "<link" not in html
    assert "compare &lt;127.0.0.1&gt; &amp; co" in html  # escaped


def test_report_content(comparison: Comparison) -> None:
    html = render_html(comparison)
    assert html.count("class='confusion'") == 3
    assert "2 of 474 verdicts differ" in html
    assert "closed→filtered ×1" in html and "closed→open|filtered ×1" in html
    # One disagreement row per differing port, with both reasons and the truth.
    table = html[html.index("<table id='disagreements'>") :]
    assert table.count("<tr class='bad'>") == 2
    assert "n/a" in html  # the missing native ACK timing


def test_every_report_without_disagreements_says_so() -> None:
    frame = read_nmap_xml_file(FIXTURES / "syn.xml").frame
    html = render_html(compare(frame.assign(engine="native"), frame))
    assert "Every verdict agrees." in html
    assert "<table id='disagreements'>" not in html


def _chromium(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    assert CHROMIUM is not None
    cmd = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp / 'profile'}",
        *args,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (make setup)")
def test_renders_in_headless_chromium(comparison: Comparison, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    write_html(comparison, report)
    dom = _chromium("--dump-dom", report.as_uri(), tmp=tmp_path)
    assert dom.returncode == 0, dom.stderr[-2000:]
    text = dom.stdout
    assert text.count('class="confusion"') == 3
    cells = sum(confusion(comparison.rows, Technique(t)).size for t in ("syn", "udp", "ack"))
    assert text.count('class="cell"') == cells
    assert text.count('class="bar"') == 6
    assert 'id="summary"' in text and 'id="disagreements"' in text

    shot = tmp_path / "report.png"
    blank = tmp_path / "blank.html"
    blank.write_text("<!DOCTYPE html><html><body></body></html>")
    blank_shot = tmp_path / "blank.png"
    for page, png in ((report, shot), (blank, blank_shot)):
        proc = _chromium(
            "--window-size=1200,1400", f"--screenshot={png}", page.as_uri(), tmp=tmp_path
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # A white page compresses to a few KB; the report with its figures is far larger.
    assert shot.stat().st_size > 10 * blank_shot.stat().st_size
