"""A real browser moves real controls: JupyterLab started by a fixture, headless Chromium driven by Playwright
(Debian's chromium through ``executable_path``; ``.ci/run`` installs it), the notebook run, a slider moved or a
dropdown changed, and the picture must change (notebook_ecosystem.md §5)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
IMG = ("() => { const i = [...document.querySelectorAll('img.widget-image')]; "
       "return i.length ? i.map(x => x.src.length + ':' + x.src.slice(-64)).join('|') : null; }")

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium); "
                                                          ".ci/run installs it, so CI always runs this test")


@pytest.fixture(scope="module")
def lab_url(tmp_path_factory):
    pytest.importorskip("playwright")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    work = tmp_path_factory.mktemp("lab")
    shutil.copytree(ROOT / "notebooks", work, dirs_exist_ok=True)
    cell = nbformat.v4.new_code_cell("from llmviz.widgets import comparison_explorer\ncomparison_explorer()")
    kernel = {"kernelspec": {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}}
    nbformat.write(nbformat.v4.new_notebook(cells=[cell], metadata=kernel), work / "compare_explorer.ipynb")
    env = dict(os.environ, OMP_NUM_THREADS="1", JUPYTER_CONFIG_DIR=str(work / ".jupyter-config"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", "--ServerApp.ip=127.0.0.1",
         f"--ServerApp.port={port}", "--ServerApp.port_retries=0", "--IdentityProvider.token=",
         "--ServerApp.password=", "--LabApp.expose_app_in_browser=True", f"--ServerApp.root_dir={work}",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            urllib.request.urlopen(url + "/api/status", timeout=1)
            break
        except OSError:
            time.sleep(0.5)
    else:
        proc.terminate()
        pytest.fail("jupyter lab did not start within 120 s")
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def page(lab_url):
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        yield context.new_page()
        context.close()
        browser.close()


def open_and_run_all(page, url: str, notebook: str) -> None:
    page.goto(f"{url}/lab/tree/{notebook}?reset", wait_until="domcontentloaded")
    page.wait_for_function(
        "() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
        " const k = w && w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
        " return k && k.status === 'idle'; }", timeout=120_000)
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function(  # every code cell has run and the kernel is idle again
        "() => { const w = window.jupyterapp.shell.currentWidget;"
        " const cells = w.content.widgets.filter(c => c.model.type === 'code' && c.model.sharedModel.source.trim());"
        " return cells.every(c => c.model.executionCount !== null) &&"
        " w.sessionContext.session.kernel.status === 'idle'; }", timeout=180_000)


def test_slider_redraws_the_figure(page, lab_url):
    open_and_run_all(page, lab_url, "00_start_here.ipynb")
    handle = page.locator(".widget-slider .noUi-handle").first
    handle.wait_for(timeout=120_000)
    page.wait_for_function(f"() => ({IMG})() !== null", timeout=60_000)
    before = page.evaluate(IMG)
    readout = page.locator(".widget-readout").first.inner_text()
    handle.focus()
    for _ in range(3):
        page.keyboard.press("ArrowRight")
    page.wait_for_function(f"(prev) => ({IMG})() !== prev", arg=before, timeout=30_000)
    assert page.evaluate(IMG) != before
    assert page.locator(".widget-readout").first.inner_text() != readout  # the control really moved


def test_dropdown_redraws_the_comparison_explorer(page, lab_url):
    """The comparison explorer (notebook 09) in a real browser: pick another batch size, the picture changes. It runs
    alone in a one-cell notebook the fixture writes (notebook 09 itself also trains models)."""
    open_and_run_all(page, lab_url, "compare_explorer.ipynb")
    page.wait_for_function(f"() => ({IMG})() !== null", timeout=60_000)
    before = page.evaluate(IMG)
    batch = page.locator(".widget-dropdown select").filter(has=page.locator("option", has_text="128")).first
    batch.select_option(label="128")
    page.wait_for_function(f"(prev) => ({IMG})() !== prev", arg=before, timeout=30_000)
    assert page.evaluate(IMG) != before
