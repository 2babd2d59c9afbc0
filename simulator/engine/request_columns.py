"""Per-request results in numpy columns, for runs that do not keep every ``Request`` object.

With ``output.keep_requests: false`` a request is made from the workload's columns
(``simulator.workload.WorkloadColumns``) just before it arrives and dropped once it finished:
``RequestColumns.record`` copies what the request table needs into preallocated columns (row i
is request i), so memory follows the requests in flight, not the length of the trace. Token
times go into the run's token-gap histogram or, with ``output.token_gaps: exact``, every gap is
appended to ``gaps`` at finish (8 bytes a token, as the exact mode needs).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterator

import numpy as np
import simpy

from simulator.engine.request import Request
from simulator.workload import WorkloadColumns

ARRIVAL_CHUNK = 4096  # requests made ahead of their arrival at a time


class RequestColumns:
    """The results of every request of a run, one preallocated column per field.

    Args:
        workload: the run's requests as columns (N rows).
        keep_gaps: keep every token gap (``output.token_gaps: exact``).
    """

    def __init__(self, workload: WorkloadColumns, keep_gaps: bool) -> None:
        n = len(workload)
        self.workload = workload
        self.replica_id = np.full(n, -1, dtype=np.int64)
        self.first_scheduled_time = np.full(n, np.nan)
        self.first_token_time = np.full(n, np.nan)
        self.finish_time = np.full(n, np.nan)
        self.num_preemptions = np.zeros(n, dtype=np.int64)
        self.num_swaps = np.zeros(n, dtype=np.int64)
        self.num_cached_tokens = np.zeros(n, dtype=np.int64)
        self.arrival_time = workload.arrival_time.copy()  # a closed loop sets arrivals as it sends
        self.gaps: array | None = array("d") if keep_gaps else None

    def record(self, request: Request) -> None:
        """Copy a finished request's results into row ``request.request_id``."""
        i = request.request_id
        self.replica_id[i] = request.replica_id
        self.arrival_time[i] = request.arrival_time
        self.first_scheduled_time[i] = request.first_scheduled_time
        self.first_token_time[i] = request.first_token_time
        self.finish_time[i] = request.finish_time
        self.num_preemptions[i] = request.num_preemptions
        self.num_swaps[i] = request.num_swaps
        self.num_cached_tokens[i] = request.num_cached_tokens
        if self.gaps is not None and len(request.token_times) > 1:
            times = request.token_times
            self.gaps.extend(np.diff(np.frombuffer(times, dtype=np.float64)))

    def columns(self) -> dict[str, np.ndarray]:
        """The request table's raw columns, in ``metrics.request_table`` order."""
        w = self.workload
        return {
            "request_id": np.arange(len(w), dtype=np.int64),
            "replica_id": self.replica_id,
            "arrival_time": self.arrival_time,
            "first_scheduled_time": self.first_scheduled_time,
            "first_token_time": self.first_token_time,
            "finish_time": self.finish_time,
            "num_prompt_tokens": w.num_prompt_tokens,
            "num_output_tokens": w.num_output_tokens,
            "num_preemptions": self.num_preemptions,
            "num_swaps": self.num_swaps,
            "num_cached_tokens": self.num_cached_tokens,
        }

    def token_gaps(self) -> np.ndarray:
        """Every token gap (s), in finish order (shape (num gaps,)); empty without ``keep_gaps``."""
        return np.frombuffer(self.gaps, dtype=np.float64).copy() if self.gaps is not None else np.empty(0)


class RowRequests:
    """A workload's rows as a sequence of fresh requests, made when read (for a closed loop,
    which reads each row once, in order)."""

    def __init__(self, workload: WorkloadColumns) -> None:
        self.workload = workload

    def __len__(self) -> int:
        return len(self.workload)

    def __getitem__(self, i: int) -> Request:
        return self.workload.requests(i, i + 1)[0]


def arrivals_from_columns(env: simpy.Environment, workload: WorkloadColumns, dispatch: Callable[[Request], None]) -> Iterator:
    """A SimPy process dispatching each request at its arrival time, made ``ARRIVAL_CHUNK`` at a time."""
    for start in range(0, len(workload), ARRIVAL_CHUNK):
        for request in workload.requests(start, start + ARRIVAL_CHUNK):
            delay = request.arrival_time - env.now
            if delay > 0:
                yield env.timeout(delay)
            dispatch(request)
