"""vLLM v1 engine releases: what each one runs by default, for the ``vllm_v1`` scheduler.

``scheduler.engine_version`` names a vLLM release, ``"0.8"`` to ``"0.19"`` (a patch release such
as ``"0.11.2"`` or ``"v0.19.1"`` is its minor release); unset, it is ``DEFAULT_ENGINE_VERSION``,
the newest release modelled. Quote it in YAML: ``0.10`` unquoted is the number 0.1. Each release
brings the defaults and behaviour below, read in the release's source (the sdists on PyPI):

=======  =================  ===========================  =========================================
release  async scheduling   full-sequence admission      where it is in the source
=======  =================  ===========================  =========================================
0.8-0.9  no such flag       no                           v1 the default engine (0.8.0
                                                         ``vllm/envs.py`` ``VLLM_USE_V1`` = 1);
                                                         ``vllm/v1/engine/core.py`` ``EngineCore.step``:
                                                         schedule, execute, update, in series
0.10-13  off (opt-in)       no                           0.10.0 ``vllm/config.py``, 0.11.0-0.13.0
                                                         ``vllm/config/scheduler.py``:
                                                         ``async_scheduling: bool = False``
0.14-18  on                 no                           0.14.0 ``vllm/config/scheduler.py``
                                                         ``async_scheduling = Field(default=None)``,
                                                         set True by ``vllm/config/vllm.py``
                                                         ``VllmConfig.__post_init__`` unless an
                                                         incompatible option is set
0.19     on                 on                           0.19.0 ``vllm/config/scheduler.py``
                                                         ``scheduler_reserve_full_isl: bool = True``
=======  =================  ===========================  =========================================

0.15 was not read (PyPI has no sdist of it); 0.14.1 and 0.16.0 agree on everything here. 0.19.1
has the same files as 0.19.0 for all of it. Before 0.8 there is no v1 engine to model (0.6.0 has
no ``vllm/v1/``): use the ``vllm`` scheduler, vLLM's v0 engine.

Async scheduling (``--async-scheduling``): the engine core keeps two batches in flight
(``vllm/v1/executor/multiproc_executor.py`` ``max_concurrent_batches`` is 2 with it) and
``EngineCore.step_with_batch_queue`` schedules step N+1 while step N runs on the GPU, before N's
output is processed; ``vllm/v1/core/sched/async_scheduler.py`` counts N's token to come as an
output placeholder, so N+1 already decodes it. What servesim draws from that
(``simulator.engine.replica``, ``VLLMV1Scheduler``): a step costs max(GPU, host) instead of GPU + host;
its tokens still reach the client after its GPU work and its own host work (output processing);
a request arriving during step N is first scheduled in step N+2; blocks of requests finishing in
N are freed after N+1 is scheduled (``update_from_output`` of N runs after ``schedule`` of N+1).
From 0.12 the scheduler skips a request whose last token is still in flight
(``Scheduler.schedule``, the ``num_output_placeholders`` check against ``max_tokens``); 0.10 and
0.11 schedule it once more and drop that token: servesim does not model the wasted slot.

Full-sequence admission (``scheduler_reserve_full_isl``): a waiting request is admitted only if
the KV blocks of its whole current sequence (``request.num_tokens``: its prompt, and for a
request back from preemption the tokens it generated too, less its prefix-cache hits) fit in the
free blocks, not only those of its first chunk (``Scheduler.schedule``, waiting loop;
``vllm/v1/core/kv_cache_manager.py`` ``KVCacheManager.can_fit_full_sequence``). It checks; it
reserves nothing: the request still allocates one chunk at a time.

Every release caches full blocks of generated tokens as well as of prompts (0.8.0
``vllm/v1/core/block_pool.py`` ``BlockPool.cache_full_blocks``: "the previously generated tokens
with preemption"; 0.19.0 ``KVCacheManager.allocate_slots`` caches up to ``request.num_tokens``),
so a request preempted by recompute resumes from the cache (``simulator.engine.prefix_cache``).

Not modelled: async scheduling with pipeline parallelism (0.10-0.15 refuse or turn it off with
PP > 1; the scheduler does not see the PP degree) or with speculative decoding (servesim has
none). vLLM's default ``max_num_seqs`` is 1,024 (0.8.0 ``EngineArgs._set_default_args_v1``, every
GPU; from 0.9 on GPUs of 70 GiB or more but A100s, ``vllm/engine/arg_utils.py``); servesim's
``scheduler.max_num_seqs`` defaults to 256 for every scheduler: set it to 1024 to match.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from simulator.errors import ScenarioError
from simulator.scenario import SchedulerConfig

DEFAULT_ENGINE_VERSION = "0.19"
FIRST_MINOR, LAST_MINOR = 8, 19  # the releases modelled: 0.8 ... 0.19
ASYNC_SCHEDULING_FROM = 10  # the flag exists (0.10.0 vllm/config.py SchedulerConfig)
ASYNC_SCHEDULING_DEFAULT_FROM = 14  # on by default (0.14.0 vllm/config/vllm.py)
FULL_SEQUENCE_ADMISSION_FROM = 19  # scheduler_reserve_full_isl exists, default True (0.19.0)

_VERSION = re.compile(r"v?0\.(\d+)(?:\.\d+)?")


@dataclass(frozen=True, slots=True)
class EngineVersion:
    """One vLLM release's engine as the ``vllm_v1`` scheduler runs it.

    Attributes:
        version: the release, ``"0.MINOR"``.
        async_scheduling: the next step is scheduled while this one runs (host and GPU overlap).
        reserve_full_sequence: admit a waiting request only if its whole current sequence fits.
    """

    version: str
    async_scheduling: bool
    reserve_full_sequence: bool


def _fail(value: object, problem: str, fix: str) -> ScenarioError:
    return ScenarioError("<scenario>", "scheduler.engine_version", value, problem, fix)


def engine_version(config: SchedulerConfig) -> EngineVersion:
    """The engine of ``config.engine_version`` with ``async_scheduling`` and
    ``scheduler_reserve_full_isl`` applied where set (None: the release's default).

    Raises:
        ScenarioError: a version that is not one of the releases modelled (0.8 to 0.19), or a
            flag set to True for a release that does not have it.
    """
    value = DEFAULT_ENGINE_VERSION if config.engine_version is None else config.engine_version
    text = repr(value) if isinstance(value, float) else str(value).strip()
    match = _VERSION.fullmatch(text)
    known = f"give a release from 0.{FIRST_MINOR} to 0.{LAST_MINOR} as a string, e.g. \"0.11\" (unquoted YAML reads 0.10 as 0.1)"
    if match is None:
        raise _fail(value, "is not a vLLM release (0.MINOR or 0.MINOR.PATCH)", known)
    minor = int(match.group(1))
    if minor < FIRST_MINOR:
        raise _fail(value, "has no v1 engine to model (vLLM made it the default in 0.8.0)",
                    f"use scheduler.name: vllm for vLLM's v0 engine, or {known[5:]}")
    if minor > LAST_MINOR:
        raise _fail(value, f"is newer than the releases servesim models (0.{FIRST_MINOR} to 0.{LAST_MINOR})", known)
    version = f"0.{minor}"
    async_scheduling = minor >= ASYNC_SCHEDULING_DEFAULT_FROM if config.async_scheduling is None else config.async_scheduling
    if async_scheduling and minor < ASYNC_SCHEDULING_FROM:
        raise ScenarioError("<scenario>", "scheduler.async_scheduling", True, f"vLLM {version} has no async scheduling (it appeared in 0.10.0)",
                            "leave scheduler.async_scheduling unset, or set scheduler.engine_version to \"0.10\" or later")
    reserve = minor >= FULL_SEQUENCE_ADMISSION_FROM if config.scheduler_reserve_full_isl is None else config.scheduler_reserve_full_isl
    if reserve and minor < FULL_SEQUENCE_ADMISSION_FROM:
        raise ScenarioError("<scenario>", "scheduler.scheduler_reserve_full_isl", True, f"vLLM {version} has no full-sequence admission check (it appeared in 0.19.0)",
                            "leave scheduler.scheduler_reserve_full_isl unset, or set scheduler.engine_version to \"0.19\"")
    return EngineVersion(version, async_scheduling, reserve)
