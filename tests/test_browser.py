"""Notebook 02 in a real browser: `make lab` serves it, headless Chromium runs it and moves its explorer.

nbval checks what the kernel computes; only a browser shows that JupyterLab opens the notebook
clean, that the ipywidgets extension draws the attention explorer and that moving its slider
redraws the figure. Run with `make browser-test` (Debian's chromium and chromium-driver).
"""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = "02_deep_emotion.ipynb"
SHOTS = ROOT / "build" / "browser-test"
# The notebook's panel, through the app that --LabApp.expose_app_in_browser exposes (by path:
# headless Chromium has no focus, so the shell has no current widget).
PANEL = f"const panel = [...jupyterapp.shell.widgets('main')].find(w => w.context?.path === '{NOTEBOOK}');"
KERNEL_STATUS = PANEL + "return panel?.sessionContext.session?.kernel?.status ?? null"
PROMPTS = "return [...document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent)"


def require(module):
    pytest.importorskip(module, reason=f"{module} is not installed: run `make browser-test`")


def lab_settings(folder: Path) -> Path:
    """User settings for a test session: nothing saved behind the test's back, every cell in the DOM."""
    settings = {
        "docmanager-extension/plugin": {"autosave": False},  # default: saves every 120 s
        "notebook-extension/tracker": {"windowingMode": "none"},  # default: off-screen cells may leave the DOM
        "apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},  # offline
    }
    for plugin, values in settings.items():
        path = folder / f"@jupyterlab/{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    return folder


@pytest.fixture
def lab(tmp_path):
    """JupyterLab started by `make lab` on a free port; yields its base URL and token, stops it after."""
    require("jupyterlab")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    token = "browser-test"
    # Runtime, config and data dirs in tmp: the test must not read or write the user's ~/.jupyter.
    env = dict(os.environ, **{f"JUPYTER_{d}_DIR": str(tmp_path / d.lower()) for d in ("RUNTIME", "CONFIG", "DATA")})
    args = [f"--no-browser --ip=127.0.0.1 --port={port} --ServerApp.token={token}",
            "--LabApp.expose_app_in_browser=True --LabApp.news_url=None",
            f"--LabApp.user_settings_dir={lab_settings(tmp_path / 'settings')}",
            f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
            f"--FileCheckpoints.checkpoint_dir={tmp_path / 'checkpoints'}"]  # not notebooks/.ipynb_checkpoints
    log = open(tmp_path / "lab.log", "w")
    proc = subprocess.Popen(["make", "lab", "LAB_ARGS=" + " ".join(args)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300  # a first `make lab` pip-installs JupyterLab
        while True:
            assert proc.poll() is None, f"make lab exited ({proc.returncode}):\n{(tmp_path / 'lab.log').read_text()}"
            assert time.monotonic() < deadline, f"JupyterLab did not answer; log in {tmp_path / 'lab.log'}"
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=5)
                break
            except OSError:
                time.sleep(1)
        yield url, token
    finally:
        # /api/shutdown stops the kernels too: jupyter_client starts them in a session of their
        # own, out of reach of killpg, which is for a server that does not answer.
        with contextlib.suppress(OSError):
            urllib.request.urlopen(urllib.request.Request(f"{url}/api/shutdown?token={token}", method="POST"), timeout=10)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


@pytest.fixture
def browser(tmp_path):
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        pytest.skip("needs Chromium and its driver (Debian: apt-get install chromium chromium-driver)")
    require("selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    # Headless as root in a container, and none of the background traffic that fails offline.
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(chromedriver))
    yield driver
    driver.quit()


def test_notebook_02_runs_in_jupyterlab_and_explorer_redraws(browser, lab):  # browser first: its skips are cheap
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    url, token = lab
    committed = (ROOT / "notebooks" / NOTEBOOK).read_bytes()
    driver = browser
    wait = lambda seconds, until, message: WebDriverWait(driver, seconds, poll_frequency=1).until(until, message)
    try:
        driver.get(f"{url}/lab/tree/{NOTEBOOK}?token={token}")
        wait(120, lambda d: d.execute_script(KERNEL_STATUS) == "idle", "the kernel never became idle")
        # The kernelspec and language_info arrive after the kernel does: let JupyterLab apply them.
        driver.execute_async_script(PANEL + "const k = panel.sessionContext.session.kernel;"
                                    "Promise.all([k.info, k.spec]).then(() => setTimeout(arguments[0], 2000))")
        dirty = driver.find_elements(By.CSS_SELECTOR, "#jp-main-dock-panel .lm-TabBar-tab.jp-mod-dirty")
        metadata = driver.execute_script(PANEL + "const m = panel.model;"
                                         "return {kernelspec: m.getMetadata('kernelspec'), language_info: m.getMetadata('language_info')}")
        assert not dirty, f"JupyterLab marks the notebook modified on opening; its metadata is now {metadata}"

        driver.execute_script(PANEL + "jupyterapp.shell.activateById(panel.id);"
                              "jupyterapp.commands.execute('notebook:run-all-cells')")
        wait(60, lambda d: any("*" in p for p in d.execute_script(PROMPTS)), "Run All Cells did not start")
        started = time.monotonic()
        # Done when no cell is queued or running ([*]) and the kernel is idle.
        wait(900, lambda d: not any("*" in p for p in d.execute_script(PROMPTS))
             and d.execute_script(KERNEL_STATUS) == "idle", "the notebook did not finish in 15 minutes")
        print(f"Run All Cells: {time.monotonic() - started:.0f} s")
        # Tracebacks only: stderr outputs also hold warnings.
        errors = driver.find_elements(By.CSS_SELECTOR, '.jp-RenderedText[data-mime-type="application/vnd.jupyter.error"]')
        assert not errors, "cell error:\n" + "\n\n".join(e.text for e in errors)

        cell = next(c for c in driver.find_elements(By.CSS_SELECTOR, ".jp-CodeCell")
                    if "AttentionExplorer(model, val" in c.find_element(By.CSS_SELECTOR, ".jp-InputArea-editor").text)
        slider = next(s for s in cell.find_elements(By.CSS_SELECTOR, ".widget-slider")
                      if s.find_element(By.CSS_SELECTOR, ".widget-label").text == "image")
        readout = slider.find_element(By.CSS_SELECTOR, ".widget-readout")
        # The explorer's figure: an <img> (PNG or SVG) in the Output widget of its VBox, replaced on each redraw.
        src = lambda: cell.find_element(By.CSS_SELECTOR, ".widget-vbox .widget-output img").get_attribute("src")
        before = src()
        assert readout.text == "0" and before.startswith("data:image/")
        # Keyboard on the slider's handle: each press is one committed change (continuous_update=False).
        handle = slider.find_element(By.CSS_SELECTOR, ".noUi-handle")
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'}); arguments[0].focus()", handle)
        ActionChains(driver).send_keys(Keys.ARROW_RIGHT * 3).perform()
        wait(60, lambda d: readout.text == "3" and d.execute_script(KERNEL_STATUS) == "idle"
             and src() != before, "the explorer did not redraw for image 3")
    except BaseException:
        SHOTS.mkdir(parents=True, exist_ok=True)
        shot = SHOTS / "failure.png"
        driver.save_screenshot(str(shot))
        print(f"screenshot: {shot}")
        raise
    # Nothing was saved: the committed notebook is byte for byte what it was.
    assert (ROOT / "notebooks" / NOTEBOOK).read_bytes() == committed
