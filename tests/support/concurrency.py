"""Bounded thread helpers shared by the integration tests."""

from __future__ import annotations

import threading
import time


def run_threads(targets, timeout=60):
    """Runs the callables in threads; returns the exceptions they raised (joined with a bound)."""
    errors = []

    def wrap(fn):
        def body():
            try:
                fn()
            except BaseException as e:  # reported by the caller
                errors.append(e)
        return body

    threads = [threading.Thread(target=wrap(fn), daemon=True) for fn in targets]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=timeout)
    stuck = sum(t.is_alive() for t in threads)
    assert stuck == 0, f"{stuck} threads still running after {timeout}s (errors so far: {errors})"
    return errors


def wait_for(predicate, timeout: float, step: float = 0.05) -> bool:
    """Polls `predicate` every `step` seconds until it holds or `timeout` seconds pass; returns
    whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())
