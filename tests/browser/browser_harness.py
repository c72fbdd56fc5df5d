"""Processes for the browser tests: start JupyterLab, find Chromium, stop process trees.

Kept apart from conftest.py so that tests can import it (``import browser_harness``).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
DRIVER_FALLBACKS = ("/usr/lib/chromium/chromedriver", "/usr/lib/chromium-browser/chromedriver")
INSTALL_HINT = "Fix: apt-get install chromium chromium-driver (.ci/run does this on CI machines)."

# JupyterLab settings for a test run: never autosave (a run must not write outputs into the
# committed notebooks), keep every cell in the DOM, and make no request to the internet.
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}


# --- processes ---------------------------------------------------------------------------


def stop_process_tree(proc: subprocess.Popen, timeout_s: float = 15) -> None:
    """Stop ``proc`` (started with ``start_new_session=True``), its group and all descendants."""
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    for sig, wait_s in ((signal.SIGTERM, timeout_s), (signal.SIGKILL, 5)):
        if proc.poll() is not None:
            break
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(wait_s)
        except subprocess.TimeoutExpired:
            continue
    kill_survivors(descendants, proc)  # e.g. kernels, which Jupyter starts in their own session


def kill_survivors(descendants: list[psutil.Process], proc: subprocess.Popen) -> None:
    """Kill whatever of ``descendants`` still runs, then ``proc`` itself."""
    alive = [p for p in descendants if p.is_running()]
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(alive, timeout=5)
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class ServerStartError(RuntimeError):
    """JupyterLab did not come up; the message says why and what to do."""


@dataclass
class JupyterLab:
    """A running JupyterLab: where it listens, its token, its process and log."""

    port: int
    token: str
    proc: subprocess.Popen
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        """A page URL that logs in with the token (and starts from a clean workspace)."""
        return f"{self.base_url}/{path.lstrip('/')}?token={self.token}&reset"

    def api(self, path: str) -> object:
        request = urllib.request.Request(
            f"{self.base_url}/api/{path.lstrip('/')}", headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.load(response)

    def log_tail(self, n: int = 40) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(lines[-n:])


def start_jupyterlab(root: Path, workdir: Path, port: int, timeout_s: float = 120) -> JupyterLab:
    """Start JupyterLab from this environment on 127.0.0.1:``port`` with a random token.

    Raises ServerStartError, naming the cause, when the port is taken or the server exits
    or does not answer in time; nothing is left running in that case.
    """
    if not port_is_free(port):
        raise ServerStartError(
            f"Port {port} on 127.0.0.1 is taken, so JupyterLab cannot listen there. Fix: stop what uses it "
            f"(`ss -ltnp | grep :{port}`), or unset SLMOPS_BROWSER_PORT to let the test pick a free port."
        )
    settings = workdir / "settings"
    for plugin, values in LAB_SETTINGS.items():
        path = settings / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    token = secrets.token_hex(24)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(workdir / "config"),  # no user config leaks in
        "JUPYTER_RUNTIME_DIR": str(workdir / "runtime"),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",  # a taken port is an error, never a silent move
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={workdir / 'workspaces'}",
        # An absolute checkpoint dir keeps .ipynb_checkpoints/ out of the checkout.
        f"--FileCheckpoints.checkpoint_dir={workdir / 'checkpoints'}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",  # the default one queries PyPI
        "--ServerApp.terminals_enabled=False",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # CI machines run as root
    log = workdir / "jupyterlab.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            cwd=root,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # one process group to stop; see stop_process_tree
        )
    lab = JupyterLab(port, token, proc, log)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if proc.poll() is not None:
                tail = lab.log_tail()
                cause = (
                    f"port {port} on 127.0.0.1 is taken"
                    if "already in use" in tail or "Address in use" in tail
                    else f"it exited with code {proc.returncode}"
                )
                raise ServerStartError(f"JupyterLab did not start: {cause}. Its log ({log}):\n{tail}")
            try:
                lab.api("status")
                return lab
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise ServerStartError(
                    f"JupyterLab did not answer on port {port} within {timeout_s:.0f} s. Its log:\n{lab.log_tail()}"
                )
            time.sleep(0.5)
    except BaseException:
        stop_process_tree(proc)
        raise


def find_chromium() -> tuple[str, str] | str:
    """(browser, driver) paths, or the reason they cannot be used."""
    browser = os.environ.get("SLMOPS_CHROMIUM") or next(filter(None, map(shutil.which, BROWSERS)), None)
    driver = os.environ.get("SLMOPS_CHROMEDRIVER") or shutil.which("chromedriver")
    driver = driver or next((p for p in DRIVER_FALLBACKS if os.access(p, os.X_OK)), None)
    missing = [name for name, path in (("chromium", browser), ("chromedriver", driver)) if not path]
    if missing:
        return f"{' and '.join(missing)} not found on PATH. {INSTALL_HINT}"
    return browser, driver
