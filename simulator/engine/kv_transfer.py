"""The network that moves KV caches from prefill replicas to decode replicas.

Each replica has one port on the KV-transfer network whose bandwidth is the link bandwidth of
one GPU times the GPUs that hold distinct KV shards: with tensor parallelism each GPU holds the
KV heads of its shard (``min(TP, KV heads)`` distinct shards: past that, heads are replicated),
with pipeline parallelism each stage holds its layers, and every GPU sends (or receives) its
shard over its own link at the same time (DistServe, Sec. 4.4: KV moves between the
corresponding GPUs of the two instances, over NVLink within a node or InfiniBand across nodes).

A transfer of B bytes from port s to port d first waits the link latency, then streams. The
transfers streaming at one time share bandwidth by max-min fairness (progressive filling: each
port's bandwidth is split evenly among its transfers, a transfer limited elsewhere gives its
unused share to the others) — processor sharing, the steady state of many concurrent flows
over congestion-controlled links (RDMA or NCCL send/recv). Alone, a transfer takes
``latency_s + B / min(bandwidth of s, bandwidth of d)``. Rates are recomputed whenever a
transfer starts or ends; between those events every rate is constant.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass

import simpy

from simulator.scenario import KVTransferConfig
from simulator.specs.gpu import GPUSpec

GB = 1e9
# One 400 Gb/s NDR InfiniBand port per GPU, the DGX H100 layout (NVIDIA ConnectX-7 datasheet);
# 5 us: RDMA write latency across one switch, the datasheet's order of magnitude.
INFINIBAND_BANDWIDTH = 50 * GB
INFINIBAND_LATENCY_S = 5e-6


def link_bandwidth_and_latency(config: KVTransferConfig, gpu: GPUSpec) -> tuple[float, float]:
    """Per-GPU bandwidth (bytes/s, one direction) and per-transfer latency (s) of the KV link.

    NVLink: the GPU's NVLink figures (``simulator.specs.gpu``); InfiniBand: 50 GB/s and 5 us.
    ``bandwidth_gb_per_s`` and ``latency_s`` in the scenario override either.
    """
    if config.link == "nvlink":
        bandwidth, latency = gpu.link_bandwidth, gpu.link_latency_s
    else:
        bandwidth, latency = INFINIBAND_BANDWIDTH, INFINIBAND_LATENCY_S
    if config.bandwidth_gb_per_s is not None:
        bandwidth = config.bandwidth_gb_per_s * GB
    if config.latency_s is not None:
        latency = config.latency_s
    return bandwidth, latency


@dataclass(slots=True, eq=False)
class Transfer:
    """One KV transfer: ``num_bytes`` from port ``source`` to port ``destination``.

    ``remaining_bytes`` and ``rate`` (bytes/s) are as of the network's last update.
    """

    source: Hashable
    destination: Hashable
    num_bytes: float
    on_done: Callable[[], None]
    remaining_bytes: float = 0.0
    rate: float = 0.0


class KVTransferNetwork:
    """Ports with a bandwidth each; transfers between them share it by max-min fairness.

    Args:
        env: the simulation environment.
        port_bandwidth: bytes/s of each port (one direction), by port name.
        latency_s: paid once per transfer before it streams (s).
    """

    def __init__(self, env: simpy.Environment, port_bandwidth: dict[Hashable, float], latency_s: float) -> None:
        assert all(b > 0 for b in port_bandwidth.values()), "every port needs a positive bandwidth"
        self.env, self.port_bandwidth, self.latency_s = env, dict(port_bandwidth), latency_s
        self.streaming: list[Transfer] = []
        self._updated_time = 0.0
        self._generation = 0  # bumps on every rate change; an older completion timer is stale

    def send(self, source: Hashable, destination: Hashable, num_bytes: float, on_done: Callable[[], None]) -> Transfer:
        """Start moving ``num_bytes`` (> 0) from ``source`` to ``destination``; ``on_done()`` at the end."""
        assert num_bytes > 0 and source in self.port_bandwidth and destination in self.port_bandwidth
        transfer = Transfer(source, destination, float(num_bytes), on_done, remaining_bytes=float(num_bytes))
        if self.latency_s > 0:
            self.env.timeout(self.latency_s).callbacks.append(lambda _: self._start(transfer))
        else:
            self._start(transfer)
        return transfer

    def _advance(self) -> None:
        now = self.env.now
        elapsed = now - self._updated_time
        if elapsed > 0:
            for t in self.streaming:
                t.remaining_bytes -= t.rate * elapsed
        self._updated_time = now

    def _start(self, transfer: Transfer) -> None:
        self._advance()
        self.streaming.append(transfer)
        self._reschedule()

    def _reschedule(self) -> None:
        """Recompute the max-min fair rates and arm a timer for the next completion."""
        self._generation += 1
        if not self.streaming:
            return
        self._fair_rates()
        first = min(self.streaming, key=lambda t: t.remaining_bytes / t.rate)
        delay = max(0.0, first.remaining_bytes / first.rate)
        generation = self._generation
        self.env.timeout(delay).callbacks.append(lambda _: self._complete(first, generation))

    def _complete(self, first: Transfer, generation: int) -> None:
        if generation != self._generation:
            return  # rates changed since this timer was armed
        self._advance()
        first.remaining_bytes = 0.0
        # Transfers ending within a nanosecond of the first end with it (float rounding).
        done = [t for t in self.streaming if t.remaining_bytes <= t.rate * 1e-9]
        self.streaming = [t for t in self.streaming if t.remaining_bytes > t.rate * 1e-9]
        self._reschedule()
        for t in done:
            t.on_done()

    def _fair_rates(self) -> None:
        """Progressive filling: saturate the most contended port, freeze its transfers, repeat."""
        capacity = {}
        users: dict[Hashable, list[Transfer]] = {}
        for t in self.streaming:
            for port in (t.source, t.destination):
                capacity.setdefault(port, self.port_bandwidth[port])
                users.setdefault(port, []).append(t)
        unfrozen = set(map(id, self.streaming))
        while unfrozen:
            share, port = min(
                (capacity[p] / sum(id(t) in unfrozen for t in ts), p)
                for p, ts in users.items() if any(id(t) in unfrozen for t in ts)
            )
            share = max(share, 1e-9 * self.port_bandwidth[port])  # rounding can leave a port at ~0
            for t in users[port]:
                if id(t) in unfrozen:
                    t.rate = share
                    unfrozen.discard(id(t))
                    for p in (t.source, t.destination):
                        capacity[p] -= share
