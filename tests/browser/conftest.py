"""Fixtures for the browser tests: the real site built once, served on 127.0.0.1, and Chromium.

Chromium is Debian's (`/usr/bin/chromium`), driven by Playwright: `playwright install` cannot
download browsers here. Set HANDSTEP_BROWSER_SITE to a built site directory to test that
site instead of building one.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from browser_support import ROOT, serve, url_of

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"


@pytest.fixture(scope="session")
def site_dir(tmp_path_factory) -> Path:
    """The default site (content/, templates/, configs/default.yaml) built by `handstep build`."""
    given = os.environ.get("HANDSTEP_BROWSER_SITE")
    if given:
        return Path(given).resolve()
    out = tmp_path_factory.mktemp("browser") / "site"
    result = subprocess.run([sys.executable, "-m", "site_build.cli", "build", "--out", str(out)],
                            cwd=ROOT, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        pytest.fail("the default site does not build:\n" + result.stderr, pytrace=False)
    return out


@pytest.fixture(scope="session")
def base_url(site_dir: Path):
    """The site served over http on 127.0.0.1 (search needs http, not file://)."""
    server = serve(site_dir)
    yield url_of(server)
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def browser():
    from playwright import sync_api
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (apt-get install chromium)", pytrace=False)
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
