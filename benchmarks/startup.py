"""Start-up of `archive-daemon` for commands that need none of its heavy libraries.

    .venv/bin/python benchmarks/startup.py [--runs 20]

Times whole processes of the installed console script running this checkout's code:
`archive-daemon --help`, `archive-daemon users list --help`, `archive-daemon devdb status`
(of an embedded database never started, in a scratch directory), and two that use a
database (a PostgreSQL of the benchmark's own): `users list`, and `ingest` of one file
already archived (what a reconcile that finds nothing new costs). Baseline, measured in the
same run: `python -c pass`, the interpreter's own start. Each runs once to warm the
caches, then N times, taking turns. Target: p90 under 0.3 s for each small command; the
ingest is shown for what it is, the smallest load.
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

from bench import fresh_database, percentile, workspace  # first: it puts the package on sys.path
from ingest import make_tree

REPO = Path(__file__).resolve().parent.parent
ARCHIVE = str(Path(sys.executable).with_name("archive-daemon"))
TARGET = 0.3

# (label, command line, its exit status, whether it is held to the target)
COMMANDS = [
    ("python -c pass (baseline)", [sys.executable, "-c", "pass"], 0, False),
    ("archive-daemon --help", [ARCHIVE, "--help"], 0, True),
    ("archive-daemon users list --help", [ARCHIVE, "users", "list", "--help"], 0, True),
    ("archive-daemon devdb status", [ARCHIVE, "devdb", "status"], 3, True),
]


def database_commands(work: Path, devdb) -> tuple[list, str]:
    """`users list` and the ingest of one archived file, on a fresh database; its URL."""
    data, = make_tree(work / "root", 1)  # a real Lick header, a sparse data part
    config = work / "config.yaml"
    config.write_text(f"roots:\n  - name: bench\n    path: {work / 'root'}\n")
    url = fresh_database(devdb, "startup")
    ingest = [ARCHIVE, "--config", str(config), "ingest", str(data)]
    subprocess.run(ingest, env={**os.environ, "ARCHIVE_DATABASE_URL": url}, check=True, capture_output=True)
    return [("archive-daemon users list (database)", [ARCHIVE, "--config", str(config), "users", "list"], 0, True),
            ("archive-daemon ingest (1 archived file)", ingest, 0, False)], url


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
    with workspace("start-up") as (work, devdb):
        more, env["ARCHIVE_DATABASE_URL"] = database_commands(work, devdb)  # the others never connect
        commands = COMMANDS + more
        times: dict[str, list[float]] = {label: [] for label, *_ in commands}
        try:
            for run in range(args.runs + 1):
                for label, argv, status, _ in commands:
                    elapsed = timed(argv, status, env)
                    if run:  # the first round only warms the caches
                        times[label].append(elapsed)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    print(f"{args.runs} runs of each command, taking turns, after one to warm up")
    base = statistics.median(times[commands[0][0]])
    for label, _, _, held in commands[1:]:
        median, p90 = statistics.median(times[label]), percentile(times[label], .9)
        line = f"  {label:40} median {median:6.3f} s  p90 {p90:6.3f} s  median/baseline {median / base:5.1f}"
        if held:
            line += f"   target p90 < {TARGET} s: {'met' if p90 < TARGET else 'MISSED'} (p90/target {p90 / TARGET:.2f})"
        print(line)
    print(f"  {commands[0][0]:40} median {base:6.3f} s")


if __name__ == "__main__":
    main()
