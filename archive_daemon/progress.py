"""Progress of a long command: a bar on a terminal, a plain line every few seconds otherwise."""

from __future__ import annotations

import sys
import time

from tqdm import tqdm

PLAIN_INTERVAL = 10.0


class Progress:
    def __init__(self, label: str, stream=sys.stderr):
        self.label = label
        self.stream = stream
        self.count = 0
        self.bar = tqdm(desc=label, unit=" files", file=stream) if stream.isatty() else None
        self.started = self.last = time.monotonic()

    def advance(self, n: int = 1) -> None:
        self.count += n
        if self.bar is not None:
            self.bar.update(n)
            return
        now = time.monotonic()
        if now - self.last >= PLAIN_INTERVAL:
            self.last = now
            rate = self.count / (now - self.started)
            print(f"{self.label}: {self.count} files checked ({rate:.0f}/s)", file=self.stream, flush=True)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.close()
