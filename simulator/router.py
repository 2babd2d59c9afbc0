"""Routers (global schedulers): pure functions choosing the replica of each arriving request.

A router takes the request and the replicas' schedulers (read-only: queue lengths, KV usage)
and returns a replica index. Found by name in ``ROUTERS``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from simulator.request import Request
from simulator.schedulers.base import Scheduler

Router = Callable[[Request, Sequence[Scheduler]], int]


def round_robin(request: Request, replicas: Sequence[Scheduler]) -> int:
    """Request i goes to replica i mod N (requests are numbered in arrival order)."""
    return request.request_id % len(replicas)


ROUTERS: dict[str, Router] = {
    "round_robin": round_robin,
}
