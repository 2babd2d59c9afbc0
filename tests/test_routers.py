"""Routers: each one's choice on hand-built replica states, determinism, and load balancing in a run."""

import pytest

from simulator.errors import ScenarioError
from simulator.engine.kv_cache import BlockManager
from simulator.engine.request import Request
from simulator.engine.router import ROUTERS, PrefixAffinity, make_router
from simulator.scenario import SchedulerConfig, load_scenario
from simulator.schedulers.vllm import VLLMScheduler
from simulator.engine.simulation import simulate
from tests.conftest import make_request


def replica(num_waiting: int = 0, num_running: int = 0, used_blocks: int = 0, num_blocks: int = 100) -> VLLMScheduler:
    """A replica's scheduler holding ``num_waiting`` + ``num_running`` requests and ``used_blocks`` blocks."""
    scheduler = VLLMScheduler(SchedulerConfig(), BlockManager(num_blocks, 16), 2048, 2048)
    for i in range(num_waiting):
        scheduler.waiting.append(make_request(1000 + i))
    for i in range(num_running):
        scheduler.running.append(make_request(2000 + i))
    if used_blocks:
        scheduler.block_manager.allocate(make_request(3000), used_blocks * 16)
    return scheduler


def hashed(request_id: int, hashes: tuple[int, ...], prompt: int | None = None) -> Request:
    return Request(request_id, 0.0, prompt or 512 * len(hashes), 10, block_hashes=hashes)


def test_round_robin_cycles_by_request_id():
    route = make_router("round_robin", 0)
    replicas = [replica(num_waiting=5), replica(), replica()]
    assert [route(make_request(i), replicas) for i in range(6)] == [0, 1, 2, 0, 1, 2]


def test_least_outstanding_counts_waiting_and_running():
    route = make_router("least_outstanding", 0)
    replicas = [replica(num_waiting=2, num_running=1), replica(num_running=2), replica(num_waiting=4)]
    assert route(make_request(0), replicas) == 1


def test_least_outstanding_breaks_ties_round_robin():
    route = make_router("least_outstanding", 0)
    replicas = [replica(num_running=1), replica(), replica(), replica()]
    # Replicas 1, 2 and 3 tie; the scan starts at request_id mod 4.
    assert [route(make_request(i), replicas) for i in range(4)] == [1, 1, 2, 3]


def test_least_kv_picks_lowest_usage_then_fewest_requests():
    route = make_router("least_kv", 0)
    replicas = [replica(used_blocks=50), replica(used_blocks=20, num_waiting=3), replica(used_blocks=20, num_waiting=1)]
    assert route(make_request(0), replicas) == 2
    # Usage is a fraction of each replica's own cache: 30 of 300 blocks beats 20 of 100.
    replicas = [replica(used_blocks=20), replica(used_blocks=30, num_blocks=300)]
    assert route(make_request(0), replicas) == 1


def test_power_of_two_never_picks_the_busiest_and_prefers_the_idlest():
    route = make_router("power_of_two", 0)
    replicas = [replica(num_running=2), replica(), replica(num_running=1)]
    choices = [route(make_request(i), replicas) for i in range(3000)]
    assert choices.count(0) == 0  # the busiest loses every pair it is sampled in
    # The idlest wins whenever it is sampled: 2 of the 3 pairs.
    assert choices.count(1) / len(choices) == pytest.approx(2 / 3, abs=0.03)
    assert make_router("power_of_two", 0)(make_request(0), [replica(num_running=9)]) == 0


def test_seeded_routers_repeat_their_choices():
    replicas = [replica(num_running=n % 3) for n in range(5)]

    def choices(seed: int) -> list[int]:
        route = make_router("power_of_two", seed)
        return [route(make_request(i), replicas) for i in range(200)]

    assert choices(7) == choices(7)
    assert choices(7) != choices(8)


def test_power_of_two_run_is_deterministic():
    overrides = ["workload.num_requests=300", "workload.arrival.rate=30", "cluster.num_replicas=3", "cluster.router=power_of_two"]
    runs = [simulate(load_scenario(None, overrides + [f"seed={seed}"])).requests["replica_id"].tolist() for seed in (3, 3, 4)]
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_prefix_affinity_follows_the_longest_prefix_while_balanced():
    route = make_router("prefix_affinity", 0)
    replicas = [replica(), replica(), replica()]
    first = route(hashed(0, (1, 2, 3, 4)), replicas)
    replicas[first].waiting.extend(make_request(100 + i) for i in range(3))  # now the busiest
    # Shares 3 of 4 blocks (> 30 %) with the first request: same replica despite its load.
    assert route(hashed(1, (1, 2, 3, 9)), replicas) == first
    # Shares 1 of 5 blocks (20 %): below the threshold, the least-loaded replica instead.
    other = route(hashed(2, (1, 7, 8, 9, 10)), replicas)
    assert other != first
    # The longest match wins over a shorter one: (1, 7, 8) now lives on `other`.
    assert route(hashed(3, (1, 7, 8, 11)), replicas) == other


def test_prefix_affinity_gives_way_when_load_is_imbalanced():
    router = PrefixAffinity()
    replicas = [replica(), replica()]
    assert router(hashed(0, (1, 2)), replicas) == 0
    replicas[0].waiting.extend(make_request(100 + i) for i in range(70))  # 70 - 0 > 64 and 70 > 1.5 x 0
    assert router(hashed(1, (1, 2)), replicas) == 1


def test_prefix_affinity_without_block_hashes_goes_to_least_loaded():
    route = make_router("prefix_affinity", 0)
    assert route(make_request(0), [replica(num_running=3), replica(num_running=1)]) == 1


def test_prefix_affinity_forgets_beyond_the_replica_cache():
    router = PrefixAffinity()
    small = [replica(num_blocks=64)]  # 64 blocks x 16 tokens = 1,024 tokens = two 512-token hash blocks
    router(hashed(0, (1, 2)), small)
    router(hashed(1, (5, 6)), small)
    assert router.matched_blocks(0, (5, 6)) == 2 and router.matched_blocks(0, (1, 2)) == 0


def test_unknown_router_lists_the_known_ones():
    with pytest.raises(ScenarioError) as e:
        make_router("fastest", 0, "s.yaml")
    message = str(e.value)
    assert "cluster.router" in message and "fastest" in message
    assert all(name in message for name in ROUTERS)


def test_load_aware_routers_cut_tail_ttft_when_slots_run_out():
    # Four replicas of at most 8 running requests, heavy-tailed output lengths: round robin keeps
    # sending to replicas whose slots are held by long requests while others sit idle; routing
    # by queue length does not (join-the-shortest-queue vs round robin in a multi-server queue).
    base = ["workload.num_requests=1000", "workload.arrival.rate=12", "cluster.num_replicas=4", "scheduler.max_num_seqs=8",
            "workload.prompt_tokens={distribution: lognormal, mean: 1000, median: 500, max: 7000}",
            "workload.output_tokens={distribution: lognormal, mean: 300, median: 60, max: 2000}"]
    p99 = {name: simulate(load_scenario(None, base + [f"cluster.router={name}"])).summary["ttft_s"]["p99"]
           for name in ("round_robin", "least_outstanding", "power_of_two")}
    assert p99["least_outstanding"] < 0.5 * p99["round_robin"]
    assert p99["power_of_two"] < 0.5 * p99["round_robin"]


def test_prefix_affinity_raises_prefix_cache_hits_on_a_real_trace(mooncake_conv):
    # Mooncake conversations share prompt prefixes (hash_ids); with vLLM v1 prefix caching on
    # four replicas, sending a prefix back where it went before finds it cached more often.
    base = [f"workload.trace={mooncake_conv}", "workload.max_requests=800", "workload.on_invalid=skip",
            "model.max_model_len=32768", "scheduler.max_num_batched_tokens=32768", "cluster.num_replicas=4", "scheduler.name=vllm_v1"]
    hit_rate = {name: simulate(load_scenario(None, base + [f"cluster.router={name}"])).summary["prefix_cache_hit_rate"]
                for name in ("round_robin", "prefix_affinity")}
    assert hit_rate["prefix_affinity"] > 1.4 * hit_rate["round_robin"]
