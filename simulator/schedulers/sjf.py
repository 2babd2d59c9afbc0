"""Shortest predicted job first: vLLM v0's batching with the waiting queue ordered by a
predicted output length, and a starvation guard.

The policy of length-aware schedulers: Fu et al., "Efficient LLM Scheduling by Learning to
Rank" (NeurIPS'24, 2024), Sec. 4 (serve the requests a learned ranker predicts to be shortest
first, with starvation prevention), and Zheng et al., "Response Length Perception and Sequence
Scheduling" (NeurIPS'23), Sec. 3; the predictor as in Qiu et al., "Efficient Interactive LLM
Serving with Proxy Model-based Sequence Length Prediction" (2024), which predicts each
request's output length from its prompt with a small proxy model:

* The predictor is the true output length times lognormal noise, ``exp(sigma x z)`` with
  ``z ~ N(0, 1)`` (``scheduler.sjf_predictor_sigma``; 0 is an oracle, 1 is within a factor of
  e about two times in three). ``z`` comes from a generator seeded by
  ``scheduler.sjf_predictor_seed`` and the request's id, so a request's prediction is the same
  in every run and on every replica.
* Waiting requests are admitted shortest prediction first (ties by arrival), instead of FCFS.
  Ahead of them come requests preempted by recompute (vLLM puts them at the front; here by
  arrival), then starved ones: a request that has waited ``scheduler.sjf_starve_limit_s``
  seconds since its arrival goes first, oldest first, so long requests are delayed, never
  starved.
* Everything else is vLLM v0 (``simulator.schedulers.vllm``): prefill-only iterations while
  waiting requests fit, else decode all running; preemption of the newest running request by
  recompute or swap; swapped requests back first. Running requests are not preempted for
  shorter ones (the rankers of both papers order the queue; neither preempts on a prediction).
"""

from __future__ import annotations

import bisect
import heapq
import math
import random

from simulator.engine.batch import Batch
from simulator.engine.kv_cache import BlockManager, SwapSpace
from simulator.engine.request import Request, RequestStatus
from simulator.scenario import SchedulerConfig
from simulator.schedulers.vllm import VLLMScheduler

_PREEMPTED, _STARVED, _BY_PREDICTION = 0, 1, 2  # the waiting queue's classes, in order


class SJFScheduler(VLLMScheduler):
    """vLLM v0 with the waiting queue ordered by predicted output length; starved requests first.

    Fu et al. (NeurIPS'24), Sec. 4, with the predictor error of the module docstring. Arguments
    as ``Scheduler``'s; the knobs are ``scheduler.sjf_*`` (the starvation limit in seconds of
    simulated time since arrival, predictions in output tokens).
    """

    def __init__(self, config: SchedulerConfig, block_manager: BlockManager, max_num_batched_tokens: int, max_model_len: int, swap_space: SwapSpace | None = None) -> None:
        super().__init__(config, block_manager, max_num_batched_tokens, max_model_len, swap_space)
        self._predicted: dict[int, float] = {}  # request_id -> predicted output tokens
        self._starved: set[int] = set()  # request ids that waited past the limit
        self._arrivals: list[tuple[float, int, Request]] = []  # heap of waiting requests by arrival

    def predicted_output_tokens(self, request: Request) -> float:
        """The predictor's output length for ``request`` (tokens; the true one when sigma is 0)."""
        predicted = self._predicted.get(request.request_id)
        if predicted is None:
            sigma = self.config.sjf_predictor_sigma
            z = random.Random(self.config.sjf_predictor_seed << 32 | request.request_id).gauss(0.0, 1.0) if sigma else 0.0
            predicted = self._predicted[request.request_id] = request.num_output_tokens * math.exp(sigma * z)
        return predicted

    def _key(self, request: Request) -> tuple[int, float, int]:
        if request.status == RequestStatus.PREEMPTED:
            return _PREEMPTED, 0.0, request.request_id
        if request.request_id in self._starved:
            return _STARVED, request.arrival_time, request.request_id
        return _BY_PREDICTION, self._predicted[request.request_id], request.request_id

    def _enqueue(self, request: Request) -> None:
        bisect.insort(self.waiting, request, key=self._key)
        heapq.heappush(self._arrivals, (request.arrival_time, request.request_id, request))

    def add_request(self, request: Request) -> None:
        self.predicted_output_tokens(request)
        self._enqueue(request)

    def _preempt(self, request: Request) -> None:
        super()._preempt(request)
        if request.status == RequestStatus.PREEMPTED:  # by recompute: vLLM put it at the front
            assert self.waiting[0] is request, "a request preempted by recompute goes to the front"
            self.waiting.popleft()
            self._enqueue(request)

    def _promote_starved(self, now: float) -> None:
        """Move requests waiting since ``now - sjf_starve_limit_s`` or earlier ahead of the rest."""
        arrivals, waiting = self._arrivals, self.waiting
        limit_time = now - self.config.sjf_starve_limit_s
        while arrivals and arrivals[0][0] <= limit_time:
            request = heapq.heappop(arrivals)[2]
            if request.status != RequestStatus.WAITING or request.request_id in self._starved:
                continue  # admitted (a stale entry), preempted (already ahead), or moved already
            waiting.remove(request)
            self._starved.add(request.request_id)
            bisect.insort(waiting, request, key=self._key)

    def schedule(self, now: float) -> Batch | None:
        if self._arrivals:
            self._promote_starved(now)
        return super().schedule(now)

    def on_step_end(self, batch: Batch, now: float) -> list[Request]:
        """Fold the step back (vLLM v0's) and forget the finished requests' predictions."""
        finished = super().on_step_end(batch, now)
        for request in finished:
            self._predicted.pop(request.request_id, None)
            self._starved.discard(request.request_id)
        return finished
