"""Browser tests: a real JupyterLab and a headless Chromium, driven by Selenium.

Why Selenium + Debian's ``chromium-driver``: the driver comes from the same Debian
source package as the browser, so their versions always match, and nothing downloads a
browser build (Playwright would want ``playwright install``; pointing it at a system
Chromium works but is outside what Playwright supports). Selenium Manager is bypassed:
the driver's path is given explicitly and ``SE_OFFLINE`` is set.

Every process these fixtures start runs in its own process group and is stopped in a
finalizer (SIGTERM to the group, then SIGKILL to it and to every descendant recorded
before, kernels included, which Jupyter starts in sessions of their own), so a failing
test leaves no server, kernel or browser behind.

Browser tests run last (see ``pytest_collection_modifyitems``): they are end-to-end and
the course-site test reuses the notebooks that the notebook tests have just executed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from browser_harness import (
    INSTALL_HINT,
    ROOT,
    SCREENSHOTS,
    JupyterLab,
    ServerStartError,
    find_chromium,
    free_port,
    kill_survivors,
    start_jupyterlab,
    stop_process_tree,
)

CALL_FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport:
    """Remember whether the test body failed, so the browser fixture can screenshot it."""
    report = yield
    if report.when == "call":
        item.stash[CALL_FAILED] = report.failed
    return report


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Move browser tests to the end of the run (a stable sort keeps their own order)."""
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


@pytest.fixture(scope="module")
def jupyterlab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    """JupyterLab over the course checkout, stopped (with its kernels) after the module."""
    port = int(os.environ.get("SLMOPS_BROWSER_PORT") or free_port())
    try:
        lab = start_jupyterlab(ROOT, tmp_path_factory.mktemp("jupyterlab"), port)
    except ServerStartError as err:
        pytest.fail(str(err), pytrace=False)
    try:
        yield lab
    finally:
        stop_process_tree(lab.proc)


@pytest.fixture(scope="module")
def notebooks_stay_clean() -> Iterator[Callable[[str], None]]:
    """Call it with each notebook a test opens in JupyterLab: it must not get saved with outputs.

    Autosave is off in the test's settings; should outputs get written anyway, the file is
    restored and the test errors. Edits without outputs (someone working on the notebook
    meanwhile) are left alone.
    """
    snapshots: dict[Path, bytes] = {}

    def guard(path: str) -> None:
        snapshots.setdefault(ROOT / path, (ROOT / path).read_bytes())

    yield guard
    saved = []
    for path, before in snapshots.items():
        if not path.is_file():  # a scratch notebook the test removed
            continue
        now = path.read_bytes()
        if now != before and any(c.get("outputs") for c in json.loads(now)["cells"]):
            path.write_bytes(before)
            saved.append(str(path.relative_to(ROOT)))
    assert not saved, f"JupyterLab saved outputs into {saved} (restored); autosave must stay off"


# --- browser -----------------------------------------------------------------------------


# CI sets this: there a missing browser fails the run instead of skipping the tests, so a
# green run always means JupyterLab, the widget and the site were driven for real.
REQUIRE_BROWSER_ENV = "SLMOPS_REQUIRE_BROWSER"


def _unavailable(reason: str) -> None:
    if os.environ.get(REQUIRE_BROWSER_ENV) == "1":
        pytest.fail(f"{reason} ({REQUIRE_BROWSER_ENV}=1: the browser tests must run here)", pytrace=False)
    pytest.skip(f"browser test skipped: {reason}")


@pytest.fixture(scope="session")
def chromium_paths() -> tuple[str, str]:
    found = find_chromium()
    if isinstance(found, str):
        _unavailable(found)
    try:
        import selenium  # noqa: F401
    except ImportError:
        _unavailable(f"selenium is not installed. Fix: pip install -e '.[dev]'. {INSTALL_HINT}")
    return found


@pytest.fixture
def browser(chromium_paths: tuple[str, str], tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[object]:
    """A headless Chromium (fresh profile, no background networking), quit after the test.

    When the test fails, the page it ended on is saved as artifacts/screenshots/FAILED-<test>.png.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ.setdefault("SE_OFFLINE", "true")  # Selenium Manager must never download anything
    browser_path, driver_path = chromium_paths
    options = webdriver.ChromeOptions()
    options.binary_location = browser_path
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-default-apps",
        "--disable-extensions",
        "--disable-sync",
        "--disable-breakpad",
        "--disable-features=Translate,MediaRouter,OptimizationHints",
        "--no-first-run",
        "--no-default-browser-check",
        "--metrics-recording-only",
        "--mute-audio",
        "--password-store=basic",
        "--allow-file-access-from-files",
        "--window-size=1400,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    options.set_capability("unhandledPromptBehavior", "accept")  # e.g. "leave page with unsaved changes?"
    service = Service(executable_path=driver_path, log_output=str(tmp_path / "chromedriver.log"))
    try:
        driver = webdriver.Chrome(service=service, options=options)
    except Exception as err:
        pytest.fail(
            f"Chromium ({browser_path}) did not start through {driver_path}: {err}\n"
            f"chromedriver log: {tmp_path / 'chromedriver.log'}",
            pytrace=False,
        )
    driver_proc = service.process
    try:
        descendants = psutil.Process(driver_proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    try:
        yield driver
    finally:
        if request.node.stash.get(CALL_FAILED, False):
            try:
                SCREENSHOTS.mkdir(parents=True, exist_ok=True)
                driver.save_screenshot(str(SCREENSHOTS / f"FAILED-{request.node.name}.png"))
            except Exception as err:  # the browser may be the thing that broke
                print(f"no failure screenshot: {err}")
        try:
            driver.quit()
        finally:
            kill_survivors(descendants, driver_proc)


@pytest.fixture(scope="session")
def screenshots() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS
