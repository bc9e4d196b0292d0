"""Progress on long local runs: images written so far, of how many, at what rate.

Distributed runners show Beam's counters in their own UIs; on the in-process runner nothing
would be seen until the end. Workers of one run in one process share a tally, keyed by the
run, so several worker threads report one number.
"""

from __future__ import annotations

import sys
import threading
import time

_LOCK = threading.Lock()
_RUNS: dict[str, dict] = {}


def report(run: str, images: int, total: int, interval: float = 10.0) -> None:
    """Adds `images` to the run's tally and prints it when `interval` seconds have passed."""
    with _LOCK:
        now = time.monotonic()
        state = _RUNS.setdefault(run, {"done": 0, "start": now, "last": now})
        state["done"] += images
        if now - state["last"] < interval:
            return
        state["last"] = now
        rate = state["done"] / max(now - state["start"], 1e-9)
        left = (total - state["done"]) / rate if rate else 0
        print(
            f"progress: {state['done']}/{total} images, {rate:.0f}/s, about {left:.0f} s left",
            file=sys.stderr,
            flush=True,
        )
