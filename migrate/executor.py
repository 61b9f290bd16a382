"""Where per-object work runs: in this process, in local worker processes, or on a Dask cluster.

The verifier hands an executor one task per data object and reads the
results back in plan order, with a bounded number in flight; the chain join
and digest roots stay in the calling process.  Every executor looks the same
to it (``map_ordered``), so local processes and a distributed engine are one
code path (the cluster's is ``dask_executor.DaskExecutor``).

Local workers are forked **before** the calling process opens any database
connection (``start`` forks them eagerly): a forked child inherits every open
socket, and a worker left holding the parent's PostgreSQL session would keep
its transaction and the migration lock alive after the parent died.  Each
worker also watches its parent and exits when the parent is gone (``kill -9``
leaves no orphans), and ignores Ctrl-C, which the parent handles.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol, TypeVar

R = TypeVar("R")


class Executor(Protocol):
    """Runs ``fn(*args)`` for each item, yielding results in the items' order, at most ``window`` in flight."""

    def map_ordered(self, fn: Callable[..., R], items: Iterable[tuple[Any, ...]], window: int | None = None
                    ) -> Iterator[R]: ...

    def close(self) -> None: ...


class InlineExecutor:
    """Everything in this process, one item after another (one object, or ``--workers 1``)."""

    workers = 1

    def map_ordered(self, fn: Callable[..., R], items: Iterable[tuple[Any, ...]], window: int | None = None
                    ) -> Iterator[R]:
        for args in items:
            yield fn(*args)

    def close(self) -> None:
        return None

    def __enter__(self) -> InlineExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _watch_parent(parent: int) -> None:
    while True:
        time.sleep(0.2)
        if os.getppid() != parent:
            os._exit(1)  # the parent is gone (killed): nothing will read our results


def _worker_setup(parent: int) -> None:
    """Ctrl-C reaches the whole process group: the parent decides and reports; workers just stop with it.

    A parsed block is a tree of many small objects and no reference cycles, so
    the cyclic collector finds nothing in it; it runs a hundred times less often.
    """
    import gc
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="parent-watch").start()
    gc.freeze()
    gc.set_threshold(70_000, 10, 10)


def _noop() -> int:
    return os.getpid()


class ProcessExecutor:
    """Local worker processes (fork), started by ``start`` before any connection exists."""

    def __init__(self, workers: int) -> None:
        import multiprocessing

        self.workers = workers
        self._pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"),
                                            initializer=_worker_setup, initargs=(os.getpid(),))
        self._started = False

    def start(self) -> ProcessExecutor:
        """Fork every worker now (the pool forks them all on its first task)."""
        if not self._started:
            self._pool.submit(_noop).result()
            self._started = True
        return self

    @property
    def pids(self) -> list[int]:
        return list(self._pool._processes or {})  # for tests: which processes are the workers

    def map_ordered(self, fn: Callable[..., R], items: Iterable[tuple[Any, ...]], window: int | None = None
                    ) -> Iterator[R]:
        self.start()
        window = window or self.workers * 2
        pending: deque[cf.Future[R]] = deque()
        it = iter(items)
        try:
            for args in it:
                pending.append(self._pool.submit(fn, *args))
                if len(pending) >= window:
                    break
            while pending:
                result = pending.popleft().result()
                nxt = next(it, None)
                if nxt is not None:
                    pending.append(self._pool.submit(fn, *nxt))
                yield result
        finally:
            for future in pending:
                future.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ProcessExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_workers(workers: int | None) -> int:
    return workers if workers is not None else min(os.cpu_count() or 1, 8)


def local_executor(workers: int | None) -> InlineExecutor | ProcessExecutor:
    """The default executor for ``workers`` (None: one per core, at most 8), its workers already started."""
    n = default_workers(workers)
    return InlineExecutor() if n <= 1 else ProcessExecutor(n).start()


__all__ = ["Executor", "InlineExecutor", "ProcessExecutor", "default_workers", "local_executor"]
