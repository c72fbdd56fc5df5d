"""The learner's view, end to end: JupyterLab in a real (headless) Chromium.

Opens notebook 01 with the course kernel, runs every cell from the Run menu, and checks
what a learner sees: no error output, a plot, the fleet calculator widget reacting to its
precision control. Then opens lab 01 and checks that ``q1.check()`` says "not attempted".
Screenshots land in artifacts/screenshots/. Takes about a minute and a half on 2 cores.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from browser_harness import ROOT, JupyterLab, ServerStartError, start_jupyterlab

pytestmark = [pytest.mark.browser, pytest.mark.slow]

KERNEL = "slmops-course"
RUN_TIMEOUT_S = 600  # notebook 01 takes ~45 s on 2 cores; generous for a loaded CI machine
TRACEBACK = re.compile(r"Traceback \(most recent call last\)|^-{20,}\s*\n\s*\w+(Error|Exception)\b", re.M)

# Per code cell: its prompt ("[3]:", "[*]:", "[ ]:"), source head, and stderr/error text.
CELLS_JS = """
return [...document.querySelectorAll('.jp-NotebookPanel:not(.lm-mod-hidden) .jp-Notebook .jp-CodeCell')].map(cell => ({
  prompt: (cell.querySelector('.jp-InputArea-prompt') || {}).textContent || '',
  source: ((cell.querySelector('.jp-InputArea-editor') || {}).textContent || '').slice(0, 80),
  stderr: [...cell.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
            .map(o => o.textContent).join('\\n'),
  text: [...cell.querySelectorAll('.jp-OutputArea-output')].map(o => o.textContent).join('\\n'),
}));
"""

SETTLE_JS = """
const done = arguments[arguments.length - 1];
const images = [...document.querySelectorAll('img')].filter(i => i.getBoundingClientRect().bottom > 0);
Promise.all(images.map(i => i.decode().catch(() => null)))
  .then(() => requestAnimationFrame(() => requestAnimationFrame(() => done(true))));
"""


@pytest.fixture(scope="module", autouse=True)
def recorded_metrics_kept():
    """Running 01 and its lab in JupyterLab rewrites their metrics files; put back what the
    notebook tests (papermill) recorded, so the course site and the quality gate read those."""
    paths = [ROOT / "artifacts" / "metrics" / f"{stem}.json" for stem in ("01_introduction", "lab_01_introduction")]
    before = {p: p.read_bytes() if p.is_file() else None for p in paths}
    yield
    for path, data in before.items():
        if data is None:
            path.unlink(missing_ok=True)
        else:
            path.write_bytes(data)


# Share of an image's pixels that are dark (text, axes, lines): a blank or half-drawn plot has few.
DARK_SHARE_JS = """
const [img, done] = arguments;
img.decode().then(() => {
const canvas = document.createElement('canvas');
canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
const ctx = canvas.getContext('2d');
ctx.drawImage(img, 0, 0);
const px = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
let dark = 0;
for (let i = 0; i < px.length; i += 4) if (px[i + 3] > 0 && Math.max(px[i], px[i + 1], px[i + 2]) < 100) dark++;
done(dark / Math.max(1, px.length / 4));
}).catch(() => done(-1));
"""


def _wait_for(condition, timeout_s: float, what: str, poll_s: float = 0.5):
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(poll_s)


def _open_notebook(driver, lab: JupyterLab, path: str, guard) -> None:
    """Open ``path`` and wait until its kernel (the course kernel) is idle."""
    from selenium.webdriver.common.by import By

    guard(path)
    driver.get(lab.url(f"lab/tree/{path}"))
    _wait_for(lambda: driver.execute_script(CELLS_JS), 90, f"{path} to show its cells")

    def session():
        sessions = [s for s in lab.api("sessions") if s["path"] == path]
        return sessions[0] if sessions and sessions[0]["kernel"]["execution_state"] == "idle" else None

    kernel = _wait_for(session, 90, f"an idle kernel for {path}")["kernel"]["name"]
    assert kernel == KERNEL, f"{path} opened with kernel {kernel!r}, not the course kernel {KERNEL!r} (make setup)"
    # Collapse the file browser so the notebook gets the whole width in screenshots.
    tabs = driver.find_elements(By.CSS_SELECTOR, ".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
    if tabs:
        tabs[0].click()


def _run_all(driver, path: str, timeout_s: float = RUN_TIMEOUT_S) -> list[dict]:
    """Run > Run All Cells, wait until nothing is queued or running; return the cells."""
    from selenium.webdriver.common.by import By

    driver.find_element(By.XPATH, "//li[contains(@class,'lm-MenuBar-item')][.//div[text()='Run']]").click()
    _wait_for(
        lambda: driver.find_elements(By.CSS_SELECTOR, "li.lm-Menu-item[data-command='runmenu:run-all']"),
        10,
        "the Run menu",
    )[0].click()
    start = time.monotonic()
    _wait_for(
        lambda: any(c["prompt"] != "[ ]:" for c in driver.execute_script(CELLS_JS)), 30, f"{path} to start running"
    )
    cells = _wait_for(
        lambda: (cells := driver.execute_script(CELLS_JS)) and not any("*" in c["prompt"] for c in cells) and cells,
        timeout_s,
        f"{path} to finish running",
        poll_s=1,
    )
    print(f"{path}: ran in {time.monotonic() - start:.0f} s in JupyterLab")
    return cells


def _assert_ran_without_errors(path: str, cells: list[dict]) -> None:
    errors = [(i, c) for i, c in enumerate(cells) if TRACEBACK.search(c["stderr"])]
    not_run = [i for i, c in enumerate(cells) if not re.fullmatch(r"\[\d+\]:", c["prompt"].strip())]
    if errors:
        i, cell = errors[0]
        pytest.fail(
            f"{path}: code cell {i} ({cell['source'][:60]!r}) shows an error; {len(not_run)} cells did not run. "
            f"Its output ends:\n{cell['stderr'][-1500:]}",
            pytrace=False,
        )
    assert not not_run, f"{path}: code cells {not_run} did not run (prompts {[cells[i]['prompt'] for i in not_run]})"


def _screenshot(driver, folder: Path, name: str, element=None) -> Path:
    """Save a screenshot once the page is painted: headless Chromium rasterizes in tiles,
    late under load, so capture until two captures in a row are identical (at most ~10 s)."""
    if element is not None:
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
    driver.execute_async_script(SETTLE_JS)  # images decoded, two frames painted
    previous = None
    for _ in range(20):
        time.sleep(0.5)
        png = driver.get_screenshot_as_png()
        if png == previous:
            break
        previous = png
    path = folder / f"{name}.png"
    path.write_bytes(png)
    return path


def test_notebook_01_runs_in_jupyterlab_with_plot_and_widget(browser, jupyterlab, screenshots, notebooks_stay_clean):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    path = "notebooks/01_introduction.ipynb"
    _open_notebook(browser, jupyterlab, path, notebooks_stay_clean)
    _screenshot(browser, screenshots, "01_opened")
    cells = _run_all(browser, path)
    _screenshot(browser, screenshots, "01_ran_all")
    _assert_ran_without_errors(path, cells)

    # A plot: a matplotlib PNG rendered as an image that really decoded.
    images = browser.find_elements(By.CSS_SELECTOR, ".jp-Notebook .jp-OutputArea-output img")
    decoded = [img for img in images if browser.execute_script("return arguments[0].naturalWidth", img) > 0]
    assert decoded, f"{path}: no plot image rendered ({len(images)} <img>, none decoded)"
    _screenshot(browser, screenshots, "01_plot", decoded[0])

    # The fleet calculator: rendered by the widget manager, not the "VBox(...)" text fallback.
    controls = browser.find_elements(By.CSS_SELECTOR, ".jp-Notebook .widget-dropdown")
    precision = next((c for c in controls if c.find_element(By.TAG_NAME, "label").text.strip() == "precision"), None)
    assert precision is not None, (
        f"{path}: the fleet calculator widget did not render (dropdowns: {[c.text for c in controls]}); "
        "is jupyterlab_widgets installed in the course environment?"
    )
    widget = precision.find_element(By.XPATH, "./ancestor::div[contains(@class,'widget-vbox')][1]")
    result = widget.find_element(By.CSS_SELECTOR, ".widget-output")

    def result_text() -> str:
        return result.text.strip()

    def wait_in_widget(condition, what: str):
        try:
            return _wait_for(condition, 30, what)
        except AssertionError as err:  # say what the widget shows instead (e.g. a traceback)
            raise AssertionError(f"{err}; the calculator's output shows:\n{result_text()[-2500:]}") from None

    before = wait_in_widget(lambda: "Model needs" in result_text() and result_text(), "the calculator's result")
    wait_in_widget(lambda: result.find_elements(By.TAG_NAME, "img"), "the calculator's plot")
    ink_before = browser.execute_async_script(DARK_SHARE_JS, result.find_element(By.TAG_NAME, "img"))
    assert ink_before > 0.002, f"the calculator's first plot is blank ({ink_before:.2%} dark pixels)"
    _screenshot(browser, screenshots, "01_widget_fp32", widget)

    Select(precision.find_element(By.TAG_NAME, "select")).select_by_visible_text("int4")
    after = wait_in_widget(lambda: (t := result_text()) != before and "Model needs" in t and t, "the widget to react")

    def mib(text: str) -> float:
        return float(re.search(r"Model needs ([\d,.]+) MiB", text).group(1).replace(",", ""))

    assert mib(after) < mib(before), f"int4 should need less RAM than fp32:\nbefore: {before}\nafter: {after}"
    wait_in_widget(lambda: result.find_elements(By.TAG_NAME, "img"), "the calculator's plot after the change")
    # The redraw (made in a widget callback, not a cell) must be a whole plot, not a blank or half-drawn one.
    ink_after = browser.execute_async_script(DARK_SHARE_JS, result.find_element(By.TAG_NAME, "img"))
    _screenshot(browser, screenshots, "01_widget_int4", widget)
    assert ink_after > 0.5 * ink_before, (
        f"the calculator's plot after the change looks blank or half-drawn: {ink_after:.2%} dark pixels, "
        f"against {ink_before:.2%} before (see artifacts/screenshots/01_widget_int4.png)"
    )


def test_lab_01_check_says_not_attempted(browser, jupyterlab, screenshots, notebooks_stay_clean):
    from selenium.webdriver.common.by import By

    path = "labs/01_introduction.ipynb"
    _open_notebook(browser, jupyterlab, path, notebooks_stay_clean)
    cells = _run_all(browser, path)
    _assert_ran_without_errors(path, cells)  # a blank lab must run to the end
    messages = [line for c in cells for line in c["text"].splitlines() if re.match(r"\W*q\d+: ", line)]
    assert any(re.search(r"q1: not attempted", m) for m in messages), f"q1.check() printed: {messages}"
    assert all("not attempted" in m for m in messages), f"a blank lab should be 'not attempted' everywhere: {messages}"
    shown = browser.find_elements(
        By.XPATH, "//div[contains(@class,'jp-OutputArea-output')][contains(., 'q1: not attempted')]"
    )
    assert shown, "the 'not attempted' message is not visible in the page"
    _screenshot(browser, screenshots, "lab01_not_attempted", shown[0])


def test_a_failing_notebook_is_reported_with_its_cell_and_error(browser, jupyterlab, notebooks_stay_clean):
    import nbformat

    scratch = ROOT / "artifacts" / "browser-scratch" / "fails_midway.ipynb"  # artifacts/ is git-ignored
    scratch.parent.mkdir(parents=True, exist_ok=True)
    nb = nbformat.v4.new_notebook(
        metadata={"kernelspec": {"name": KERNEL, "display_name": KERNEL, "language": "python"}}
    )
    nb.cells = [nbformat.v4.new_code_cell(src) for src in ("x = 1", "raise ValueError('boom in cell 1')", "y = 2")]
    nbformat.write(nb, scratch)
    try:
        path = scratch.relative_to(ROOT).as_posix()
        _open_notebook(browser, jupyterlab, path, notebooks_stay_clean)
        cells = _run_all(browser, path, timeout_s=120)
        with pytest.raises(pytest.fail.Exception) as failed:
            _assert_ran_without_errors(path, cells)
        message = str(failed.value)
        assert "code cell 1" in message and "ValueError" in message and "boom in cell 1" in message, message
        assert "1 cells did not run" in message, message
    finally:
        shutil.rmtree(scratch.parent, ignore_errors=True)


def test_taken_port_fails_with_a_clear_message(tmp_path):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ServerStartError, match=rf"Port {port} on 127.0.0.1 is taken"):
            start_jupyterlab(Path.cwd(), tmp_path, port)
