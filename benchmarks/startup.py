"""Start-up of `archive-daemon` for commands that need none of its heavy libraries.

    .venv/bin/python benchmarks/startup.py [--runs 20]

Times whole processes of the installed console script running this checkout's code:
`archive-daemon --help`, `archive-daemon users list --help`, and `archive-daemon devdb
status` (of an embedded database never started, in a scratch directory). Baseline,
measured in the same run: `python -c pass`, the interpreter's own start. Each runs once to
warm the caches, then N times, taking turns. Target: p90 under 0.3 s for each command.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import percentile  # first: it puts the package on sys.path

REPO = Path(__file__).resolve().parent.parent
ARCHIVE = str(Path(sys.executable).with_name("archive-daemon"))
TARGET = 0.3

# (label, command line, its exit status)
COMMANDS = [
    ("python -c pass (baseline)", [sys.executable, "-c", "pass"], 0),
    ("archive-daemon --help", [ARCHIVE, "--help"], 0),
    ("archive-daemon users list --help", [ARCHIVE, "users", "list", "--help"], 0),
    ("archive-daemon devdb status", [ARCHIVE, "devdb", "status"], 3),
]


def timed(argv: list[str], status: int, env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, timeout=60)
    elapsed = time.perf_counter() - start
    if result.returncode != status:
        sys.exit(f"{' '.join(argv)}: exit status {result.returncode}, expected {status}\n{result.stderr.decode()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="timed runs of each command (default 20)")
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="archive-bench-")
    # This checkout's code even where the console script was installed from another one.
    env = {**os.environ, "ARCHIVE_VAR_DIR": scratch,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    env.pop("ARCHIVE_CONFIG", None)
    times: dict[str, list[float]] = {label: [] for label, _, _ in COMMANDS}
    try:
        for run in range(args.runs + 1):
            for label, argv, status in COMMANDS:
                elapsed = timed(argv, status, env)
                if run:  # the first round only warms the caches
                    times[label].append(elapsed)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"machine: {os.cpu_count()} cores; {args.runs} runs of each command, taking turns, after one to warm up")
    base = statistics.median(times[COMMANDS[0][0]])
    for label, _, _ in COMMANDS:
        median, p90 = statistics.median(times[label]), percentile(times[label], .9)
        line = f"  {label:34} median {median:6.3f} s  p90 {p90:6.3f} s"
        if label != COMMANDS[0][0]:
            line += (f"  median/baseline {median / base:5.1f}   target p90 < {TARGET} s: "
                     f"{'met' if p90 < TARGET else 'MISSED'} (p90/target {p90 / TARGET:.2f})")
        print(line)


if __name__ == "__main__":
    main()
