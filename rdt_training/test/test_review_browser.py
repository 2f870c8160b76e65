"""The review page in a real headless Chromium (Debian's chromium + chromium-driver, driven by selenium):
the index renders and sorts, the episode's video loads and reports the episode's duration, the cursor
follows playback, the curation commands follow the inputs. Screenshots are kept as test artifacts.

Without chromium the test skips and says so; RDT_REQUIRE_BROWSER=1 (CI) makes that a failure."""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

from rdt_core.episode import EpisodeReader

from rdt_training.review import build_review

from review_data import make_review_set

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
REPO = Path(__file__).resolve().parents[2]


def _missing() -> str:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    if not CHROMIUM or not CHROMEDRIVER:
        return "chromium / chromedriver not found (apt-get install chromium chromium-driver)"
    return ""


if _missing():
    if os.environ.get("RDT_REQUIRE_BROWSER") == "1":
        raise RuntimeError(f"RDT_REQUIRE_BROWSER=1 but {_missing()}")
    pytest.skip(_missing(), allow_module_level=True)


def artifacts_dir() -> Path:
    """Where screenshots are kept: $RDT_TEST_ARTIFACTS, else the workspace's build/test_artifacts."""
    d = Path(os.environ.get("RDT_TEST_ARTIFACTS") or REPO / "build" / "test_artifacts")
    d.mkdir(parents=True, exist_ok=True)
    return d


@pytest.fixture(scope="module")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="rdt-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={profile}", "--window-size=1400,1000", "--autoplay-policy=no-user-gesture-required"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def site(tmp_path_factory, kinova):
    root = tmp_path_factory.mktemp("browser")
    made = make_review_set(root / "episodes", kinova)
    index = build_review(root / "episodes", root / "review", jobs=2, progress=False)
    return index, made


def wait_for(driver, script, timeout=30.0):
    """Poll a JavaScript expression until it is truthy (a loaded machine may be slow); returns its value."""
    end = time.monotonic() + timeout
    while True:
        value = driver.execute_script(f"return ({script});")
        if value or time.monotonic() > end:
            return value
        time.sleep(0.1)


def full_page_screenshot(driver, name: str) -> Path:
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1400, min(max(height, 800), 6000))
    driver.execute_script("window.scrollTo(0, 0)")
    path = artifacts_dir() / name
    driver.save_screenshot(str(path))
    driver.set_window_size(1400, 1000)
    print(f"screenshot: {path}")
    return path


def test_index_renders_and_sorts(browser, site):
    index, _ = site
    browser.get(index.as_uri())
    rows = browser.execute_script("return [...document.querySelectorAll('#episodes tbody tr')].map(r => r.dataset.key)")
    assert rows == [f"episode_{k}.hdf5" for k in range(9)]
    thumbs = wait_for(browser, "[...document.images].filter(i => i.complete && i.naturalWidth > 0).length"
                               " === document.images.length && document.images.length")
    assert thumbs == 9 * 2 * 3                      # first, middle, last frame of both cameras
    head = browser.find_element("xpath", "//th[normalize-space()='duration s']")
    head.click()
    head.click()                                     # descending: the long episode first
    first = browser.execute_script("return document.querySelector('#episodes tbody tr').dataset.key")
    assert first == "episode_6.hdf5"
    shot = full_page_screenshot(browser, "review_index.png")
    assert shot.stat().st_size > 20_000


def test_episode_video_plays_with_the_episodes_duration_and_the_cursor_follows(browser, site):
    index, made = site
    browser.get(index.as_uri())
    browser.find_element("link text", "episode_6.hdf5").click()
    assert wait_for(browser, "document.getElementById('video').readyState >= 1"), \
        browser.execute_script("const e = document.getElementById('video').error; return e && e.message")
    with EpisodeReader(made["long_idle"]) as r:
        span = (r.timestamps[-1] - r.timestamps[0]) / 1e9
        period = 1.0 / r.meta.control_frequency
    duration = browser.execute_script("return document.getElementById('video').duration")
    # the video covers the steps' time span, the last frame one step long
    assert duration == pytest.approx(span + period, abs=2e-3)
    assert browser.execute_script("return document.getElementById('video').videoWidth") == 128
    # seek: the cursor moves to that time on the plot's axis
    browser.execute_script("const v = document.getElementById('video'); v.currentTime = 2.0;")
    assert wait_for(browser, "document.getElementById('timeline').dataset.cursorTime === '2.000'")
    geo = browser.execute_script("""
        const img = document.getElementById('timeline-img').getBoundingClientRect();
        const cur = document.getElementById('cursor').getBoundingClientRect();
        const g = JSON.parse(document.getElementById('timeline').dataset.geometry);
        return [img.left, img.width, cur.left, g.x0, g.x1, g.t1];""")
    left, width, cursor, x0, x1, t1 = geo
    assert cursor == pytest.approx(left + width * (x0 + 2.0 / t1 * (x1 - x0)), abs=2.0)
    # play: time advances and the cursor follows
    browser.execute_script("document.getElementById('video').play()")
    assert wait_for(browser, "document.getElementById('video').currentTime > 2.3")
    assert wait_for(browser, "parseFloat(document.getElementById('timeline').dataset.cursorTime) > 2.3")
    browser.execute_script("document.getElementById('video').pause()")
    # the trim and exclude commands follow the video time and the reason typed
    t_now = browser.execute_script("return document.getElementById('video').currentTime")
    browser.find_element("id", "set-start").click()
    cmd = browser.find_element("id", "cmd-trim").text
    assert f"trim episode_6.hdf5 --start {t_now:.2f} --end 4.96" in cmd and cmd.startswith("rdt-dataset-edit ")
    browser.find_element("id", "reason").send_keys("operator's pause")
    assert browser.find_element("id", "cmd-exclude").text.endswith(
        "exclude episode_6.hdf5 --reason 'operator'\"'\"'s pause'")
    shot = full_page_screenshot(browser, "review_episode.png")
    assert shot.stat().st_size > 20_000
