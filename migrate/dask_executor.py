"""Per-object work on a Dask distributed cluster, behind the same ``map_ordered`` as local processes.

The verifier's split does not change: each data object is one task
(``check_object``: read, parse, re-hash, and for ``migrate`` encode the COPY
rows), run on the cluster's workers; the chain join, digest roots and the
database stay in this process, which reads results back in plan order.  So a
cluster run and a local run produce the same results by construction: the
same function over the same arguments, joined by the same code.

Tasks are submitted ``pure=False`` (an object read twice is read twice), at
most ``window`` at a time (default two per worker thread); a result stays in
its worker's memory until this process fetches it, a few ahead of the one
being joined (``prefetch``), so neither side holds more than the window.
A worker that dies is Dask's business: the scheduler
reschedules its tasks on the others (up to ``distributed.scheduler.allowed-
failures`` deaths per task, then ``KilledWorker``); only an outcome Dask gives
up on reaches the caller, as ``ClusterError`` (exit 3), never a hang: a run
with no worker left for ``no_workers_timeout`` seconds stops too.

Workers need the same qldb-migrate code as this process (checked before the
first task, by a fingerprint of its sources: a worker built from another
commit could judge differently) and must reach the source themselves: S3
through their own credentials, or a local path that every worker mounts at
the same absolute place.  ``distributed`` is imported only here, and only
when a cluster is asked for: it is an optional dependency (``[dask]``).
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from . import __version__

R = TypeVar("R")


class DaskUsageError(Exception):
    """``--dask-scheduler`` cannot work as given (exit 2)."""

    exit_code = 2


class DaskMissing(DaskUsageError):
    """``--dask-scheduler`` without ``distributed`` installed."""


class BadAddress(DaskUsageError):
    """``--dask-scheduler`` names no address Dask can dial."""


class ClusterError(Exception):
    """The cluster could not be reached, has no usable worker, or gave up on a task (exit 3)."""

    exit_code = 3


def _distributed() -> Any:
    try:
        import distributed
    except ImportError as exc:
        raise DaskMissing(
            "--dask-scheduler needs Dask distributed, which is not installed: "
            "pip install 'qldb-migrate[dask]' (and the same on every worker)"
        ) from exc
    return distributed


def code_fingerprint() -> str:
    """SHA-256 over this package's Python sources: equal on two machines means they judge alike."""
    import importlib

    digest = hashlib.sha256()
    for package in ("qldb_migrate", "qldb_migrate.verify", "qldb_migrate.pg", "qldb_migrate.sample",
                    "qldb_migrate.commands"):
        module = importlib.import_module(package)
        for directory in sorted(module.__path__):
            for path in sorted(Path(directory).glob("*.py")):
                digest.update(f"{package}/{path.name}\0".encode())
                digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


_CODE: str | None = None  # this process's code_fingerprint(), once


def _own_code() -> str:
    global _CODE
    if _CODE is None:
        _CODE = code_fingerprint()
    return _CODE


def _run_as(fn: Callable[..., R], *args: Any) -> tuple[str, str, R | None, Exception | None]:
    """Runs on a worker, for every task: (the worker's address, its code fingerprint, ``fn(*args)`` or the exception
    it raised).  check_workers asked the workers there were; one that joins later (an adaptive cluster scaling up, a
    replaced pod) was never asked, so every outcome says which code made it — a failure too, whose exit code (1 for a
    SourceError) would otherwise be another build's word (a red-team finding)."""
    import traceback

    from distributed import get_worker

    worker, code = get_worker().address, _own_code()
    try:
        return worker, code, fn(*args), None
    except Exception as exc:
        exc.add_note(traceback.format_exc().rstrip())  # the worker's traceback, which a returned exception loses
        return worker, code, None, exc


def probe_worker(spec: Any) -> dict[str, Any]:
    """Runs on each worker before any task: which code it has, and whether it reaches the source."""
    from .native import AVAILABLE
    from .sources import SourceError

    error = None
    try:
        source = spec.open()
        if spec.is_s3:
            next(iter(source.list_keys()), None)  # one LIST: the bucket exists and these credentials may read it
    except SourceError as exc:
        error = str(exc)
    return {"version": __version__, "code": _own_code(), "native": AVAILABLE, "source": error}


def _label(args: tuple[Any, ...], index: int) -> str:
    """What a task works on, for messages: the object key when an argument has one (a ``DataObject``)."""
    for arg in args:
        key = getattr(arg, "key", None)
        if isinstance(key, str):
            return key
    return f"item {index}"


class DaskExecutor:
    """Runs ``map_ordered`` tasks on the workers of the Dask scheduler at ``address``."""

    remote = True  # its workers do not share this machine's files (a stream archive's spill)

    def __init__(self, address: str, no_workers_timeout: float | None = None, prefetch: int = 4) -> None:
        distributed = _distributed()
        import dask
        from distributed.comm.addressing import parse_address
        from distributed.comm.registry import backends

        scheme = parse_address(address, strict=False)[0] if address else ""
        if scheme not in backends:
            raise BadAddress(f"--dask-scheduler {address!r}: not a Dask scheduler address; give e.g. "
                             f"tcp://10.0.0.5:8786 (schemes: {', '.join(sorted(backends))})")
        # Dask's client logs its reconnect attempts with tracebacks; what they come to is said here, in one line.
        _quiet(logging.ERROR)
        self.address = address
        self.code = code_fingerprint()  # what every worker's result must have been made by
        self.prefetch = max(1, prefetch)
        self.connect_timeout = float(dask.utils.parse_timedelta(dask.config.get("distributed.comm.timeouts.connect")))
        # no worker for this long (none joined, or all gone mid-run): stop instead of waiting for ever
        self.no_workers_timeout = no_workers_timeout if no_workers_timeout is not None else max(
            60.0, self.connect_timeout)
        try:
            self.client = distributed.Client(address, set_as_default=False, name="qldb-migrate")
        except (OSError, TimeoutError, ValueError) as exc:
            raise ClusterError(f"cannot reach the Dask scheduler at {address} ({_first_line(exc)})") from exc

    # -- before the first task ------------------------------------------------------------------

    @property
    def workers(self) -> int:
        """Worker threads the cluster has now (each runs one object at a time)."""
        try:
            return sum(self.client.nthreads().values())
        except Exception:  # the scheduler went away: the next task says so properly
            return 0

    def check_workers(self, spec: Any) -> dict[str, dict[str, Any]]:
        """Waits for a worker, then asks every worker for its code and whether it reaches ``spec``.

        Refuses (``ClusterError``) a cluster with no worker, a worker running
        other qldb-migrate code than this process, or one that cannot open the
        source: found here, once, rather than as a finding on every object.
        """
        try:
            self.client.wait_for_workers(1, timeout=self.no_workers_timeout)
        except (TimeoutError, OSError) as exc:
            raise ClusterError(f"the Dask scheduler at {self.address} has no worker "
                               f"(waited {self.no_workers_timeout:.0f}s)") from exc
        try:
            answers = self.client.run(probe_worker, spec, on_error="return")
        except Exception as exc:  # the scheduler went away, or could not ship the probe
            raise ClusterError(f"the Dask scheduler at {self.address} did not run the worker check "
                               f"({_first_line(exc)})") from exc
        mine = self.code = code_fingerprint()
        for worker, answer in sorted(answers.items()):
            if isinstance(answer, BaseException):
                raise ClusterError(
                    f"Dask worker {worker} cannot run qldb-migrate ({type(answer).__name__}: {_first_line(answer)}); "
                    f"install qldb-migrate {__version__} on every worker")
            if answer["code"] != mine:
                raise _other_code(worker, answer["code"], mine, answer["version"])
            if answer["source"] is not None:
                raise ClusterError(f"Dask worker {worker} cannot read the source: {answer['source']}")
        return answers

    def run_on_workers(self, fn: Callable[..., Any], *args: Any) -> dict[str, Any]:
        """``fn(*args)`` once on every worker now, by worker address; an exception is that worker's answer."""
        try:
            return self.client.run(fn, *args, on_error="return")
        except Exception as exc:  # the scheduler went away, or could not ship the function
            raise ClusterError(f"the Dask scheduler at {self.address} did not run {fn.__name__} on the workers "
                               f"({_first_line(exc)})") from exc

    # -- the work -------------------------------------------------------------------------------

    def map_ordered(self, fn: Callable[..., R], items: Iterable[tuple[Any, ...]], window: int | None = None
                    ) -> Iterator[R]:
        """``fn(*args)`` for each item on the cluster, results in the items' order.

        At most ``window`` tasks are submitted and not yet handed to the
        caller; without one, two per worker thread, re-counted every few
        seconds so a cluster that scales up (an adaptive deployment) gets more
        work in flight.  The next ``prefetch`` results in order are fetched by
        background threads while the caller works on the current one: a fetch
        is a round trip to a worker, and the caller's part is sequential.
        """
        pending: deque[tuple[Any, str]] = deque()  # submitted, not being fetched yet
        fetching: deque[tuple[cf.Future[Any], Any]] = deque()  # in order: (the fetch, the Dask future)
        it = enumerate(items)
        exhausted = False
        counted_at = 0.0
        limit = window or 2

        def fill() -> None:
            nonlocal exhausted, counted_at, limit
            if window is None and time.monotonic() - counted_at > 5:
                limit, counted_at = max(2, 2 * self.workers), time.monotonic()
            while not exhausted and len(pending) + len(fetching) < limit:
                nxt = next(it, None)
                if nxt is None:
                    exhausted = True
                    break
                index, args = nxt
                pending.append((self.client.submit(_run_as, fn, *args, pure=False, retries=0),
                                _label(args, index)))
            while pending and len(fetching) < self.prefetch:
                future, label = pending.popleft()
                fetching.append((pool.submit(self._result, future, label), future))

        pool = cf.ThreadPoolExecutor(self.prefetch, thread_name_prefix="dask-fetch")
        try:
            fill()
            while fetching:
                fetch, future = fetching.popleft()
                result = fetch.result()
                future.release()  # its worker may drop the result now
                fill()
                yield result
        finally:
            left = [f for f, _ in pending] + [f for _, f in fetching]
            if left:
                with contextlib.suppress(Exception):
                    self.client.cancel(left)  # a fetch still waiting on one of them ends with it
            pool.shutdown(wait=False, cancel_futures=True)

    def _result(self, future: Any, label: str) -> Any:
        """The task's result; Dask's own failures become ``ClusterError``, the task's exceptions pass through."""
        from asyncio import CancelledError

        from distributed import TimeoutError as DaskTimeout
        from distributed.scheduler import KilledWorker

        from .sources import SourceError

        no_workers_since: float | None = None
        while True:
            try:
                worker, code, result, error = future.result(timeout=5)
            except KilledWorker as exc:
                deaths = exc.allowed_failures + 1
                raise ClusterError(
                    f"{label}: {'a Dask worker' if deaths == 1 else f'{deaths} Dask workers'} died while running it "
                    f"(last {exc.last_worker.address}); out of memory? see the workers' logs") from exc
            except (TimeoutError, DaskTimeout):
                if future.status != "pending":
                    continue
                if self.workers:
                    no_workers_since = None
                    continue
                now = time.monotonic()
                no_workers_since = no_workers_since or now
                if now - no_workers_since > self.no_workers_timeout:
                    raise ClusterError(f"{label}: no Dask worker left to run it (waited "
                                       f"{self.no_workers_timeout:.0f}s)") from None
            except Exception as exc:
                if future.status == "error" and not isinstance(exc, CancelledError):
                    raise  # Dask could not run the task at all (its arguments did not unpickle, say)
                why = getattr(exc, "reason", None) or f"{type(exc).__name__}: {_first_line(exc)}"
                raise ClusterError(f"lost the Dask cluster at {self.address} while running {label} ({why})") from exc
            else:
                if code != self.code:  # a worker that joined after check_workers, with another build
                    raise _other_code(worker, code, self.code, None, label)
                if isinstance(error, SourceError):  # as a local run raises it, saying where it happened
                    raise type(error)(f"{error} (on a Dask worker)") from error
                if error is not None:
                    raise error  # the task's own exception (a bug): as a local run would raise it
                return result

    def close(self) -> None:
        _quiet(logging.CRITICAL + 1)  # closing cancels a reconnect in progress, which it logs as an error
        with contextlib.suppress(Exception):
            self.client.close(timeout=10)

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _other_code(worker: str, code: str, mine: str, version: str | None, label: str | None = None) -> ClusterError:
    """A worker whose results this client must not join: its qldb-migrate code differs (it could judge otherwise)."""
    theirs = f"version {version}, code {code}" if version else f"code {code}"
    where = f"{label}: " if label else ""
    return ClusterError(f"{where}Dask worker {worker} runs other qldb-migrate code ({theirs}) than this client "
                        f"(version {__version__}, code {mine}); install the same release on the client and every "
                        "worker")


def _quiet(level: int) -> None:
    """Dask's loggers in this process at ``level``: its own config sets some children (``distributed.client``)."""
    names = [n for n in logging.root.manager.loggerDict if n == "distributed" or n.startswith("distributed.")]
    for name in ["distributed", *names]:
        logging.getLogger(name).setLevel(level)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


__all__ = ["BadAddress", "ClusterError", "DaskExecutor", "DaskMissing", "DaskUsageError", "code_fingerprint",
           "probe_worker"]
