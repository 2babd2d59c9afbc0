"""Executors: run one function over many items in parallel, on local processes or on Ray.

``compare`` and ``plan`` run many independent simulations of one base scenario (DESIGN.md, the
flow of data). Both go through one narrow interface::

    executor = make_executor("local", max_workers=4)
    for index, result in executor.map(simulate_one, scenarios, desc="runs"):
        ...

``map`` yields ``(index, result)`` pairs as the items finish (not in input order), with a tqdm
progress bar and ETA on stderr. ``fn`` and the items must be picklable: ``fn`` a module-level
function, items plain data or frozen dataclasses such as ``Scenario``.

An exception raised by ``fn`` is re-raised in the caller as the same exception type, with
``task_index`` (the item's index) set on it and, on Python 3.11+, a note naming the index; the
items not yet started are cancelled. An exception that cannot travel between processes is
re-raised as ``TaskError`` carrying the worker's traceback text.

Two implementations:

* ``LocalExecutor``: ``concurrent.futures.ProcessPoolExecutor`` on this machine (default
  ``os.cpu_count()`` workers); with ``max_workers=1`` it runs in-process, no pool, so a
  debugger and tracebacks see the real frames. Workers end with the process that started
  them, however it ends (Ctrl-C, SIGTERM, SIGKILL, the OOM killer): on Linux each worker asks
  the kernel for SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``, through
  ``billiard.util.set_pdeathsig``, the call Celery's worker pool makes for the same purpose).
  Other systems have no such call: there workers stop on Ctrl-C and on errors, but outlive a
  killed parent, and the executor says so with a ``RuntimeWarning`` when it starts a pool.
* ``RayExecutor``: one Ray task per item on a Ray cluster (``ray.init(address=...)``; no address
  starts a local instance). Ray is imported only when this executor is made.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar

from tqdm import tqdm

from simulator.errors import ScenarioError

T = TypeVar("T")
R = TypeVar("R")

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "TaskError", "make_executor"]


class Executor(Protocol):
    """Runs a function over items in parallel (see the module docstring)."""

    def map(self, fn: Callable[[T], R], items: Sequence[T], *, desc: str = "") -> Iterator[tuple[int, R]]:
        """Run ``fn`` on every item in parallel; yield ``(index, result)`` as each finishes.

        Shows a tqdm progress bar with an ETA on stderr. ``fn`` and ``items`` must be picklable
        (module-level functions). An exception in ``fn`` is re-raised here with the item's index
        (``exception.task_index``); stopping the iteration early cancels the items not started.
        """
        ...


class TaskError(RuntimeError):
    """An exception from a worker that could not be sent back as itself.

    Attributes:
        task_index: index of the failed item.
        remote_type: the original exception's class name.
        remote_traceback: the worker's formatted traceback.
    """

    def __init__(self, task_index: int, remote_type: str, message: str, remote_traceback: str) -> None:
        self.task_index, self.remote_type, self.remote_traceback = task_index, remote_type, remote_traceback
        super().__init__(f"task {task_index} failed: {remote_type}: {message}\n{remote_traceback}")

    def __reduce__(self):
        return TaskError, (self.task_index, self.remote_type, str(self), self.remote_traceback)




@dataclass(frozen=True)
class _Failure:
    """A worker's exception, packed to travel back: pickled if it survives the round trip."""

    exception_bytes: bytes | None
    type_name: str
    message: str
    traceback_text: str

    @classmethod
    def of(cls, error: BaseException) -> _Failure:
        text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
        try:
            data = pickle.dumps(error)
            pickle.loads(data)
        except Exception:  # noqa: BLE001 - any failure means "send it as text"
            data = None
        return cls(data, type(error).__name__, str(error), text)

    def exception(self, index: int, desc: str) -> BaseException:
        """The exception to raise in the caller, marked with the item's index."""
        if self.exception_bytes is None:
            return TaskError(index, self.type_name, self.message, self.traceback_text)
        error = pickle.loads(self.exception_bytes)
        _mark(error, index, desc)
        return error


def _mark(error: BaseException, index: int, desc: str) -> None:
    """Set ``task_index`` on ``error`` and add a note naming the failed item."""
    try:
        error.task_index = index  # type: ignore[attr-defined]
    except AttributeError:  # an exception type with __slots__
        pass
    if hasattr(error, "add_note"):
        error.add_note(f"(in task {index}{' of ' + desc if desc else ''})")


def _run_task(fn: Callable[[T], R], index: int, item: T) -> tuple[int, bool, Any]:
    """Worker side: ``(index, True, result)`` or ``(index, False, _Failure)``; never raises."""
    try:
        return index, True, fn(item)
    except Exception as error:  # noqa: BLE001 - every failure goes back to the caller
        return index, False, _Failure.of(error)


def _progress(total: int, desc: str, enabled: bool) -> tqdm:
    return tqdm(total=total, desc=desc or None, unit="run", file=sys.stderr, disable=not enabled, dynamic_ncols=True, smoothing=0.1)


# prctl(PR_SET_PDEATHSIG) is Linux's alone (prctl(2)); elsewhere workers are not tied to the parent.
_TIED_TO_PARENT = sys.platform.startswith("linux")


def _end_with_parent(parent_pid: int) -> None:
    """Worker initializer (Linux): the kernel sends this worker SIGKILL when its parent dies.

    The signal follows the parent *thread* that forked the worker (prctl(2)): the pool forks
    its workers from the thread that first calls ``map``, which waits for them to finish.
    A parent that died between the fork and this call is caught by its pid having changed.

    Args:
        parent_pid: the pid of the process that made the pool.
    """
    from billiard.util import set_pdeathsig  # Celery's multiprocessing fork; small, pure Python

    set_pdeathsig(signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent is already gone: this worker was reparented
        os._exit(1)


def _pool(max_workers: int) -> ProcessPoolExecutor:
    """A process pool whose workers end with this process (see the module docstring).

    On Linux the workers are forked (Python's default there before 3.14, and what keeps their
    parent this process, as ``_end_with_parent`` checks); elsewhere the platform default.
    """
    if not _TIED_TO_PARENT:
        warnings.warn(
            f"on {sys.platform}, servesim's worker processes outlive a parent killed by a signal other than Ctrl-C; "
            "end them by hand after such a kill, or use --workers 1",
            RuntimeWarning,
            stacklevel=3,
        )
        return ProcessPoolExecutor(max_workers=max_workers)
    return ProcessPoolExecutor(
        max_workers=max_workers, mp_context=multiprocessing.get_context("fork"), initializer=_end_with_parent, initargs=(os.getpid(),)
    )


def _terminate(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and stop the workers now, without waiting for their items.

    ``shutdown(cancel_futures=True)`` alone would let the items already handed to workers run
    to the end, which for a capacity search can be minutes after Ctrl-C.
    """
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public API before 3.14
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=5)


class LocalExecutor:
    """Processes on this machine (``concurrent.futures.ProcessPoolExecutor``).

    Args:
        max_workers: worker processes; default ``os.cpu_count()``; never more than the items.
            1 runs every item in this process, in order, without a pool.
        progress: show the progress bar.
    """

    def __init__(self, max_workers: int | None = None, progress: bool = True) -> None:
        if max_workers is not None and max_workers < 1:
            raise ScenarioError("--workers", "", max_workers, "must be >= 1", "give a positive number of worker processes")
        self.max_workers = max_workers or os.cpu_count() or 1
        self.progress = progress

    def map(self, fn: Callable[[T], R], items: Sequence[T], *, desc: str = "") -> Iterator[tuple[int, R]]:
        """See ``Executor.map``."""
        if self.max_workers == 1 or len(items) <= 1:
            yield from self._serial(fn, items, desc)
            return
        pool = _pool(min(self.max_workers, len(items)))
        try:
            with _progress(len(items), desc, self.progress) as bar:
                pending: set[Future] = {pool.submit(_run_task, fn, i, item) for i, item in enumerate(items)}
                while pending:
                    done, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for future in done:
                        index, ok, value = future.result()
                        if not ok:
                            raise value.exception(index, desc)
                        bar.update(1)
                        yield index, value
        except BaseException:  # a failed item, Ctrl-C, or the caller stopped iterating
            _terminate(pool)
            raise
        pool.shutdown(wait=True)

    def _serial(self, fn: Callable[[T], R], items: Sequence[T], desc: str) -> Iterator[tuple[int, R]]:
        with _progress(len(items), desc, self.progress) as bar:
            for index, item in enumerate(items):
                try:
                    result = fn(item)
                except Exception as error:
                    _mark(error, index, desc)
                    raise
                bar.update(1)
                yield index, result


class RayExecutor:
    """One Ray task per item, at most ``max_workers`` in flight (default: all, Ray queues them).

    Joins the running Ray instance if ``ray.init`` was already called; otherwise calls
    ``ray.init(address=address)`` (``None``: start a local instance; ``"auto"`` or
    ``"ray://host:10001"``: join a cluster). On a cluster every node needs servesim installed
    (``pip install -e ".[ray]"``) and the trace and profile files at the same paths.

    Raises:
        ScenarioError: ray is not installed.
    """

    def __init__(self, address: str | None = None, max_workers: int | None = None, progress: bool = True) -> None:
        try:
            import ray
        except ImportError:
            raise ScenarioError("--executor", "", "ray", "ray is not installed", 'run pip install -e ".[ray]" or use --executor local') from None
        if max_workers is not None and max_workers < 1:
            raise ScenarioError("--workers", "", max_workers, "must be >= 1", "give a positive number of tasks in flight")
        self._ray = ray
        if not ray.is_initialized():
            ray.init(address=address, include_dashboard=False, log_to_driver=False)
        self.max_workers = max_workers
        self.progress = progress
        self._remote = ray.remote(_run_task)

    def map(self, fn: Callable[[T], R], items: Sequence[T], *, desc: str = "") -> Iterator[tuple[int, R]]:
        """See ``Executor.map``."""
        ray = self._ray
        limit = self.max_workers or len(items)
        fn_ref = ray.put(fn)
        next_index, pending = 0, []
        try:
            with _progress(len(items), desc, self.progress) as bar:
                while pending or next_index < len(items):
                    while next_index < len(items) and len(pending) < limit:
                        pending.append(self._remote.remote(fn_ref, next_index, items[next_index]))
                        next_index += 1
                    done, pending = ray.wait(pending, num_returns=1)
                    index, ok, value = ray.get(done[0])
                    if not ok:
                        raise value.exception(index, desc)
                    bar.update(1)
                    yield index, value
        finally:
            for ref in pending:
                ray.cancel(ref)


def make_executor(kind: Literal["local", "ray"] = "local", *, max_workers: int | None = None, address: str | None = None, progress: bool = True) -> Executor:
    """The executor named by ``kind`` (``--executor``): ``"local"`` processes or ``"ray"`` tasks.

    Args:
        kind: ``"local"`` or ``"ray"``.
        max_workers: local worker processes (default ``os.cpu_count()``, 1 = in-process) or Ray
            tasks in flight (default: all).
        address: the Ray cluster to join (Ray only; None starts a local instance).
        progress: show the progress bar on stderr.

    Raises:
        ScenarioError: an unknown kind, ``max_workers`` < 1, or ray missing for ``"ray"``.
    """
    if kind == "local":
        return LocalExecutor(max_workers, progress)
    if kind == "ray":
        return RayExecutor(address, max_workers, progress)
    raise ScenarioError("--executor", "", kind, "unknown executor", "use local or ray")
