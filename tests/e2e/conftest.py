"""Fixtures of the browser tests: a throwaway JupyterLab server on loopback and a headless Chromium.

Skips (with the reason) when Playwright or Chromium is not installed; never passes silently.
Chromium is ``TL_CHROMIUM``, Debian's (`apt-get install chromium`) or Playwright's own download
(`python -m playwright install chromium`), driven through Playwright's ``executable_path``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
ARTIFACTS = ROOT / "test-artifacts" / "e2e"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]

# JupyterLab user settings of the throwaway server: every cell stays in the DOM (no windowing), no
# kernel dialog, no autosave (the notebooks are copies anyway), no news or update checks (no network, no toasts).
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none", "autoStartDefaultKernel": True},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/apputils-extension/notification": {"fetchNews": "false", "checkForUpdates": False},
}


def _playwright_chromium() -> list[str]:
    """Chromium binaries that ``python -m playwright install chromium`` downloaded (newest first)."""
    cache = Path(os.environ.get("PLAYWRIGHT_BROWSERS_PATH") or Path.home() / ".cache" / "ms-playwright")
    return [str(p) for p in sorted(cache.glob("chromium-*/chrome-linux*/chrome"), reverse=True)]


def chromium_path() -> str | None:
    """``TL_CHROMIUM``, else Debian's Chromium, else Playwright's own download; None if none is installed."""
    cands = (
        [os.environ["TL_CHROMIUM"]]
        if os.environ.get("TL_CHROMIUM")
        else ["/usr/bin/chromium", shutil.which("chromium"), *_playwright_chromium()]
    )
    for cand in cands:
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    return None


CHROMIUM_SKIP = (
    "e2e: no Chromium found (not at {where}, nor in Playwright's browser cache): install one with "
    "`sudo apt-get install chromium` or `python -m playwright install chromium`, or set TL_CHROMIUM to its path"
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    """A running JupyterLab: ``url(path)`` gives an authenticated address on 127.0.0.1."""

    base: str
    token: str
    root: Path
    proc: subprocess.Popen
    log: Path

    def url(self, path: str, *flags: str) -> str:
        return f"{self.base}/{path.lstrip('/')}?" + "&".join([*flags, f"token={self.token}"])

    def api(self, path: str, method: str = "GET") -> object:
        req = urllib.request.Request(
            f"{self.base}/api/{path}", method=method, headers={"Authorization": f"token {self.token}"}
        )
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
        return json.loads(body) if body else None

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])


def start_lab(root: Path, home: Path, log: Path, env_extra: dict[str, str], timeout: float = 90) -> Lab:
    """Start ``jupyter lab`` serving ``root`` on a free loopback port with a token, config in ``home``."""
    token, port = secrets.token_hex(16), _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "JPY_"))}
    env.pop("MPLBACKEND", None)  # a learner's kernel uses the inline backend (CI exports Agg for nbval)
    env.update(
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTER_DATA_DIR=str(home / "data"),
        IPYTHONDIR=str(home / "ipython"),
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        **env_extra,
    )
    for plugin, values in LAB_SETTINGS.items():
        f = home / "settings" / f"{plugin}.jupyterlab-settings"
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_text(json.dumps(values))
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.terminals_enabled=False",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    lab = Lab(f"http://127.0.0.1:{port}", token, root, proc, log)
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"jupyter lab exited with code {proc.returncode}:\n{lab.log_tail()}")
        try:
            lab.api("status")
            return lab
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                stop_lab(lab)
                raise RuntimeError(
                    f"jupyter lab did not answer on {lab.base} within {timeout:.0f} s:\n{lab.log_tail()}"
                ) from None
            time.sleep(0.5)


def stop_lab(lab: Lab) -> None:
    """Shut the server down through its API (it stops its kernels); kill it and its kernels if that fails."""
    import psutil

    try:
        children = psutil.Process(lab.proc.pid).children(recursive=True)  # kernels run in sessions of their own
    except psutil.NoSuchProcess:
        children = []
    if lab.proc.poll() is None:
        try:
            lab.api("shutdown", method="POST")
            lab.proc.wait(timeout=30)
        except (urllib.error.URLError, ConnectionError, TimeoutError, subprocess.TimeoutExpired):
            lab.proc.kill()
            lab.proc.wait(timeout=10)
    for child in children:
        try:
            child.kill()
        except psutil.NoSuchProcess:
            pass


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def sync_playwright():
    """Playwright's sync API, or a skip that says how to install it."""
    try:
        from playwright.sync_api import sync_playwright as sp
    except ImportError as e:
        pytest.skip(
            f"e2e: Playwright for Python is not installed ({e}): `bash course.sh test` installs it, "
            "or run `pip install -e '.[e2e]'`"
        )
    return sp


@pytest.fixture(scope="session")
def chromium() -> str:
    """The Chromium executable, or a skip that says how to install it."""
    exe = chromium_path()
    if exe is None:
        pytest.skip(CHROMIUM_SKIP.format(where=os.environ.get("TL_CHROMIUM") or "/usr/bin/chromium"))
    return exe


@pytest.fixture(scope="session")
def lab(tmp_path_factory, artifacts) -> Lab:
    """JupyterLab on 127.0.0.1 serving a copy of ``notebooks/`` in quick mode; stopped at the end, also on failure."""
    tmp = tmp_path_factory.mktemp("lab")
    root = tmp / "root"
    shutil.copytree(NOTEBOOKS, root / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    server = start_lab(root, tmp / "home", artifacts / "jupyterlab.log", {"TLHELPERS_QUICK": "1"})
    yield server
    stop_lab(server)


@pytest.fixture
def page(sync_playwright, chromium, lab, tmp_path, artifacts, request):
    """A fresh headless Chromium page (new empty profile); a screenshot is saved if the test fails."""
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            pg = ctx.pages[0] if ctx.pages else ctx.new_page()
            yield pg
            rep = getattr(request.node, "rep_call", None)
            if rep is not None and rep.failed:
                pg.screenshot(path=str(artifacts / f"FAILED-{request.node.name}.png"), full_page=True)
        finally:
            ctx.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    rep = yield
    if rep.when == "call":
        item.rep_call = rep
    return rep
