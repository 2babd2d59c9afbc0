"""Property-based invariants over every scheduler: random small workloads and configurations.

Hypothesis draws a handful to 40 requests (random prompt and output lengths; arrivals in bursts,
with zero gaps, or spread out; prefix-sharing Mooncake-style hash ids) and a configuration that
squeezes the KV cache down to one or a few longest requests (so policies preempt), with random
block sizes, batch caps, token budgets, chunk sizes, swap space, prefix caching, 1-3 replicas
(DistServe: 1-2 per pool), every router, and open or closed-loop load. On every run:

* every request finishes exactly once with exactly its output tokens, TTFT <= E2E;
* every batch has distinct requests, at most ``max_num_seqs`` of them, at most the policy's
  token budget, and only tokens the request has KV blocks for;
* KV blocks are conserved after every step, and all free at the end;
* the same scenario and seed give identical request and iteration tables.

Examples are derandomized (no example database), so every run of the suite tries the same ones.
"""

from __future__ import annotations

import itertools
import json
import math
import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.engine.batch import Batch
from simulator.engine.deployment import CHUNKED_PREFILL_SCHEDULERS, SWAP_SCHEDULERS
from simulator.engine.router import ROUTERS
from simulator.scenario import Scenario, scenario_from_dict
from simulator.schedulers import SCHEDULERS
from simulator.schedulers.base import Scheduler
from simulator.engine.simulation import Simulation, SimulationResult
from simulator.specs.model import bundled_model_spec
from tests.conftest import check_invariants
from tests.test_conformance import DRAIN_S, check_preemptions_counted

TRACE_BLOCK_TOKENS = 512  # Mooncake's hash ids name 512-token blocks of the prompt (prefix_cache.prompt_block_keys)
PROPERTY_SETTINGS = settings(max_examples=20, deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def traces(draw, max_model_len: int) -> list[dict]:
    """Mooncake JSONL rows: ms timestamps, lengths, and hash ids that share prefixes."""
    n = draw(st.integers(1, 40))
    gap_ms = st.one_of(st.just(0), st.integers(0, 20), st.integers(0, 2_000))  # ties, bursts, quiet spells
    prompt = st.integers(1, max_model_len - 1)
    output = st.one_of(st.integers(1, 8), st.integers(1, max_model_len))  # beyond max_model_len - prompt: cut by the loader
    ids: dict[tuple[int, ...], int] = {}  # a prompt prefix (its branch per trace block) -> its hash id
    rows, now_ms = [], 0
    for _ in range(n):
        now_ms += draw(gap_ms)
        num_prompt = draw(prompt)
        branches = draw(st.lists(st.integers(0, 2), min_size=math.ceil(num_prompt / TRACE_BLOCK_TOKENS), max_size=math.ceil(num_prompt / TRACE_BLOCK_TOKENS)))
        hash_ids = [ids.setdefault(tuple(branches[: i + 1]), len(ids)) for i in range(len(branches))]
        rows.append({"timestamp": now_ms, "input_length": num_prompt, "output_length": draw(output), "hash_ids": hash_ids})
    return rows


@st.composite
def scenarios(draw, scheduler: str) -> tuple[dict, list[dict]]:
    """A scenario for ``scheduler`` with a small KV cache (as a dict, less its trace), and its trace rows."""
    policy = SCHEDULERS[scheduler]
    max_model_len = draw(st.sampled_from([128, 600, 2048]))
    block_size = draw(st.sampled_from([4, 16, 48]))
    fewest_blocks = math.ceil(max_model_len / block_size)  # the least the deployment accepts: one longest request
    # Admission keeps int(watermark x blocks) blocks free (kv_cache.BlockManager), so the cache
    # holds one longest request above the watermark: otherwise such a prompt could never start.
    watermark = draw(st.sampled_from([0.0, 0.01, 0.1]))
    least_blocks = next(n for n in itertools.count(fewest_blocks) if n - int(watermark * n) >= fewest_blocks)
    sched: dict = {
        "name": scheduler,
        "block_size": block_size,
        "num_gpu_blocks_override": draw(st.integers(least_blocks, 2 * least_blocks)),
        "max_num_seqs": draw(st.integers(1, 8)),
        "max_num_batched_tokens": draw(st.integers(8 if scheduler in CHUNKED_PREFILL_SCHEDULERS else max_model_len, 2 * max_model_len)),
        "chunk_size": draw(st.integers(8, 1024)),
        "watermark": watermark,
    }
    if (caching := draw(st.sampled_from([None, True, False]))) is not None:
        sched["enable_prefix_caching"] = caching
    if scheduler in SWAP_SCHEDULERS and draw(st.booleans()):
        # Swap space for 1, 3 or 1,000 KV blocks of the default model (TP 1): from one victim's worth to plenty.
        block_bytes = bundled_model_spec(Scenario().model.name).kv_bytes_per_token(2) * block_size
        num_swap_blocks = draw(st.sampled_from([1, 3, 1000]))
        sched |= {"preemption_mode": "swap", "swap_space_gib": (num_swap_blocks + 0.5) * block_bytes / 2**30}
    cluster: dict = {"router": draw(st.sampled_from(sorted(ROUTERS)))}
    if getattr(policy, "decode_policy", None) is not None:  # disaggregated: two pools
        cluster["prefill"] = {"num_replicas": draw(st.integers(1, 2))}
        cluster["decode"] = {"num_replicas": draw(st.integers(1, 2))}
    else:
        cluster["num_replicas"] = draw(st.integers(1, 3))
    workload = {}
    if draw(st.booleans()):  # closed loop: N clients, each sending its next request when the last one finished
        workload = {"concurrency": draw(st.integers(1, 8)), "think_time_s": draw(st.sampled_from([0.0, 0.5]))}
    config = {"seed": draw(st.integers(0, 2**16)), "model": {"max_model_len": max_model_len}, "scheduler": sched, "cluster": cluster, "workload": workload}
    return config, draw(traces(max_model_len))


def _checked(scheduler: Scheduler) -> None:
    """Wrap ``scheduler.schedule`` and ``on_step_end`` to check each batch and the KV cache each step."""
    schedule, on_step_end = scheduler.schedule, scheduler.on_step_end

    def checked_schedule(now: float) -> Batch | None:
        batch = schedule(now)
        if batch is not None:
            bm = scheduler.block_manager
            assert len({r.request_id for r in batch.requests}) == len(batch.requests), "a request twice in one batch"
            assert len(batch.requests) <= scheduler.max_num_seqs and batch.num_tokens <= scheduler.token_budget
            for request, num_new_tokens in zip(batch.requests, batch.num_new_tokens):
                assert 1 <= num_new_tokens <= request.num_uncomputed_tokens, (request.request_id, num_new_tokens)
                assert bm.num_blocks_held(request) * bm.block_size >= request.num_computed_tokens + num_new_tokens, "tokens without KV blocks"
        return batch

    def checked_step_end(batch: Batch, now: float):
        finished = on_step_end(batch, now)
        scheduler.block_manager.check()
        return finished

    scheduler.schedule, scheduler.on_step_end = checked_schedule, checked_step_end


def _run(scenario: Scenario) -> tuple[Simulation, SimulationResult]:
    """Build ``scenario`` with checked schedulers; run it, failing rather than hanging on a livelock."""
    sim = Simulation(scenario)
    for replica in sim.replicas:
        _checked(replica.scheduler)
    last_arrival = sim.workload.requests[-1].arrival_time
    sim.env.run(until=last_arrival + DRAIN_S)
    assert sim.num_finished == len(sim.workload.requests), f"requests unfinished {DRAIN_S:.0f} s after the last arrival"
    return sim, sim.run()


def _scenario(config: dict, rows: list[dict], folder: Path) -> Scenario:
    """The drawn scenario, its requests written as a Mooncake trace in ``folder``."""
    trace = folder / "trace.jsonl"
    trace.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return scenario_from_dict({**config, "workload": {**config["workload"], "trace": str(trace)}}, "<property test>")


@pytest.mark.parametrize("scheduler", sorted(SCHEDULERS))
@PROPERTY_SETTINGS
@given(data=st.data())
def test_invariants_hold_on_random_workloads_and_configurations(scheduler, data):
    config, rows = data.draw(scenarios(scheduler))
    with tempfile.TemporaryDirectory() as folder:
        scenario = _scenario(config, rows, Path(folder))
        sim, result = _run(scenario)
        check_invariants(sim, result)
        check_preemptions_counted(result)
        # Each request's tokens came out in time order, none before it arrived.
        for r in sim.workload.requests:
            assert list(r.token_times) == sorted(r.token_times) and r.token_times[0] >= r.arrival_time
        # Per replica, iterations stay within that replica's own token budget and batch cap.
        it = result.iterations
        for replica in sim.replicas:
            rows = it[it["replica_id"] == replica.replica_id]
            assert (rows["num_prefill_tokens"] + rows["num_decode_tokens"] <= replica.scheduler.token_budget).all()
            assert (rows["batch_size"] <= replica.scheduler.max_num_seqs).all()

        # The same scenario and seed: identical tables.
        _, again = _run(scenario)
        pd.testing.assert_frame_equal(result.requests, again.requests)
        pd.testing.assert_frame_equal(result.iterations, again.iterations)
