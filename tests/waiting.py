"""Waiting in tests: poll a condition until one generous deadline, never sleep a fixed short time.

Every deadline in the suite derives from one setting, `PHIVAULT_TEST_PATIENCE` (seconds, default 300):
the longest any single wait may take before the test calls it a failure. A wait returns as soon as
its condition holds, so a generous deadline costs nothing on a quick machine and keeps a slow or
loaded one (a second copy of the suite running beside this one) from looking broken.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

DEFAULT_PATIENCE_SECONDS = 300.0
PATIENCE_SECONDS = float(os.environ.get("PHIVAULT_TEST_PATIENCE", str(DEFAULT_PATIENCE_SECONDS)))
POLL_START_SECONDS = 0.02
POLL_MAX_SECONDS = 0.5


def patience(share: float = 1.0) -> float:
    """A deadline in seconds: `share` of the suite's patience (for waits that are a part of a larger one)."""
    return PATIENCE_SECONDS * share


def stretched(bound_seconds: float) -> float:
    """A bound the product promises (a recovery within 3 minutes), kept as it is unless the suite is told,
    through a patience above the default, that this machine is slower."""
    return bound_seconds * max(1.0, PATIENCE_SECONDS / DEFAULT_PATIENCE_SECONDS)


class Deadline:
    """A point in time `seconds` from now, and the polling interval to use until then (backing off)."""

    def __init__(self, seconds: float | None = None, max_interval: float = POLL_MAX_SECONDS) -> None:
        self.seconds = patience() if seconds is None else seconds
        self.ends = time.monotonic() + self.seconds
        self.interval = min(POLL_START_SECONDS, max_interval)
        self.max_interval = max_interval

    def passed(self) -> bool:
        return time.monotonic() >= self.ends

    def remaining(self) -> float:
        return max(0.0, self.ends - time.monotonic())

    def next_interval(self) -> float:
        interval = min(self.interval, self.remaining())
        self.interval = min(self.interval * 2, self.max_interval)
        return interval


def wait_until(
    probe: Callable[[], T | None], what: str, seconds: float | None = None, max_interval: float = POLL_MAX_SECONDS
) -> T:
    """Call `probe` until it returns something other than None/False; fail naming `what` at the deadline.

    `max_interval` caps the backing-off poll interval, for a state that may not last long."""
    deadline = Deadline(seconds, max_interval)
    while True:
        value = probe()
        if value is not None and value is not False:
            return value
        if deadline.passed():
            raise AssertionError(f"{what}: not within {deadline.seconds:.0f} s")
        time.sleep(deadline.next_interval())


async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    what: str,
    seconds: float | None = None,
    max_interval: float = POLL_MAX_SECONDS,
) -> T:
    """The async `wait_until`: await `probe` until it returns something other than None/False."""
    deadline = Deadline(seconds, max_interval)
    while True:
        value = await probe()
        if value is not None and value is not False:
            return value
        if deadline.passed():
            raise AssertionError(f"{what}: not within {deadline.seconds:.0f} s")
        await asyncio.sleep(deadline.next_interval())
