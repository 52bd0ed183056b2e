"""The one thread a process runs its model on.

Every encode runs here, never on the event loop's default executor. That executor hands work to any of
its threads, and torch's intra-op pool (OpenMP) belongs to the thread that calls into it: encodes arriving
from several threads start several pools, whose idle threads spin on the CPU the current encode needs.
Measured in one process under load (bench/results/REPORT.md, issue 13): a query's encode took p50 26.7 ms
through `asyncio.to_thread` against 21.1 ms on one dedicated thread and 21.0 ms called directly.
One thread also serialises encodes, which on a CPU-bound model costs no throughput (each encode already
uses every core torch is given).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

def _new_executor() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="phivault-model")


_model_thread = _new_executor()


def _after_fork_in_child() -> None:
    """A forked child (a prefork worker) has none of its parent's threads: it starts its own model thread."""
    global _model_thread
    _model_thread = _new_executor()


os.register_at_fork(after_in_child=_after_fork_in_child)


def model_executor() -> ThreadPoolExecutor:
    """The model thread, for callers outside an event loop (the worker loads its model on it)."""
    return _model_thread


async def on_model_thread(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """`function(*args, **kwargs)` on the model thread, awaited without blocking the event loop."""
    return await asyncio.get_running_loop().run_in_executor(_model_thread, lambda: function(*args, **kwargs))
