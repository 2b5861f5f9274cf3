"""Real headless Chromium for the dashboard's end-to-end tests: Debian's ``chromium``
driven by Playwright for Python (its own browser downloads are never used).

A missing or broken Chromium makes the tests error out; they never skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading

CHROMIUM = "/usr/bin/chromium"
PACKAGE = "chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]

_lock = threading.Lock()


class ChromiumError(RuntimeError):
    """Chromium could not be installed or started."""


def ensure_chromium() -> str:
    """Installs Debian's chromium when /usr/bin/chromium is missing; returns its path."""
    with _lock:
        if os.access(CHROMIUM, os.X_OK):
            return CHROMIUM
        if shutil.which("apt-get") is None or os.geteuid() != 0:
            raise ChromiumError(f"{CHROMIUM} is missing: run `sudo apt-get install {PACKAGE}` "
                                "or run the tests through scripts/test as root")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        lock_wait = ["-o", "DPkg::Lock::Timeout=600"]
        for cmd in (["apt-get", *lock_wait, "update", "-qq"],
                    ["apt-get", *lock_wait, "install", "-y", "-qq", "--no-install-recommends",
                     PACKAGE, "fonts-dejavu-core"]):
            result = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL,
                                    capture_output=True, text=True)
            if result.returncode != 0:
                raise ChromiumError(f"installing {PACKAGE} failed: `{' '.join(cmd)}` exited "
                                    f"with {result.returncode}\n{result.stdout[-2000:]}"
                                    f"{result.stderr[-2000:]}")
        if not os.access(CHROMIUM, os.X_OK):
            raise ChromiumError(f"{PACKAGE} was installed but {CHROMIUM} is missing")
        return CHROMIUM
