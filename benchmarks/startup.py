"""How long the command line takes to answer (issue 18): ``mailbot --help``, ``--version``
and ``status``, beside a bare ``python -c pass`` measured in the same run.

A library's IT runs these by hand and from monitoring every minute; each used to pay for
SQLAlchemy, the models, Starlette and the holiday calendars before doing anything. The
goals: --help and --version under 0.3 s, status under 0.6 s on the two-core development
machine. ``status`` runs on the demo's database (made first, in a temporary folder), so it
reads real pools, a queue and an outbox.

Each command runs ``--runs`` times, the commands taking turns (so a noisy neighbour slows
them alike); the median and the worst are printed, and each median's ratio to the bare
interpreter's.

    .venv/bin/python benchmarks/startup.py [--runs 9]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

GOALS = {"--help": 0.3, "--version": 0.3, "status": 0.6}


def _seconds(argv: list[str], cwd: Path, *, prints: bool = True) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, capture_output=True)
    took = time.perf_counter() - started
    # status exits 1 when something needs attention; a command that failed says so on
    # stderr and prints nothing on stdout (the bare interpreter prints nothing at all).
    if done.returncode not in (0, 1) or (prints and not done.stdout) or \
            b"Traceback" in done.stderr:
        raise SystemExit(f"{argv}: exit {done.returncode}: {done.stderr.decode()[-500:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=9)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="mailbot-startup-") as tmp:
        work = Path(tmp)
        subprocess.run([sys.executable, "-m", "mailbot", "demo", "--no-serve", "--dir",
                        str(work / "demo")], cwd=work, check=True, stdout=subprocess.DEVNULL)
        config = str(work / "demo" / "mailbot.toml")
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "--help": [sys.executable, "-m", "mailbot", "--help"],
            "--version": [sys.executable, "-m", "mailbot", "--version"],
            "status": [sys.executable, "-m", "mailbot", "--config", config, "status"],
        }
        for name, argv in commands.items():  # warm the page cache and the .pyc files
            _seconds(argv, work, prints=name != "python -c pass")
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.runs):
            for name, argv in commands.items():
                times[name].append(_seconds(argv, work, prints=name != "python -c pass"))
    bare = statistics.median(times["python -c pass"])
    print(f"{'command':16} {'median':>8} {'worst':>8} {'x bare':>7}  goal")
    for name, values in times.items():
        median = statistics.median(values)
        goal = GOALS.get(name)
        verdict = "" if goal is None else f"< {goal:.1f} s: {'met' if median < goal else 'NOT met'}"
        print(f"{name:16} {median:7.3f}s {max(values):7.3f}s {median / bare:7.1f}  {verdict}")


if __name__ == "__main__":
    main()
