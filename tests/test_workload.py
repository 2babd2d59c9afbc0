"""Workloads: the real public traces replay as published; bad rows fail loudly or are counted."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from simulator.errors import ScenarioError
from simulator.scenario import ArrivalConfig, LengthConfig, WorkloadConfig
from simulator.workload import Workload, load_workload

TRACES = Path(__file__).resolve().parents[2] / "shared" / "traces"
AZURE_CONV = TRACES / "azure2023" / "AzureLLMInferenceTrace_conv.csv"
MOONCAKE_CONV = TRACES / "mooncake" / "conversation_trace.jsonl"
VIDUR_CONV = TRACES / "vidur" / "splitwise_conv.csv"
ARXIV = TRACES / "vidur" / "arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv"
VLLM_SHAREGPT = TRACES / "vllm-sharegpt" / "sharegpt-llama-3.1-8b-300-sps10.jsonl"

needs_traces = pytest.mark.skipif(not TRACES.is_dir(), reason="public traces not found beside the checkout")


def load(trace: Path | str | None = None, seed: int = 0, max_model_len: int = 16384, **fields) -> Workload:
    """A workload from a trace (or synthetic when None) with WorkloadConfig fields overridden."""
    return load_workload(WorkloadConfig(trace=None if trace is None else str(trace), **fields), seed, max_model_len)


def write_csv(tmp_path: Path, text: str, name: str = "bad.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def arrivals(w: Workload) -> np.ndarray:
    return np.array([r.arrival_time for r in w.requests])


# --- the real traces ---------------------------------------------------------------------------


@needs_traces
def test_azure_conversation_trace_replays_58_minutes_from_zero():
    w = load(AZURE_CONV)
    t = arrivals(w)
    assert len(w.requests) == 19_366 and w.num_skipped == 0
    assert t[0] == 0.0 and np.all(np.diff(t) >= 0)
    assert 57 * 60 < t[-1] < 59 * 60
    assert [r.request_id for r in w.requests[:3]] == [0, 1, 2]
    first = w.requests[1]
    assert (type(first.arrival_time), type(first.num_prompt_tokens), type(first.num_output_tokens)) == (float, int, int)
    # 2023-11-16 18:15:50.9951690 - 18:15:46.6805900, to the 100 ns of the file.
    assert first.arrival_time == pytest.approx(4.314579, abs=1e-7)
    assert (first.num_prompt_tokens, first.num_output_tokens) == (396, 109)


@needs_traces
def test_azure_conversation_trace_has_one_prompt_too_long_for_an_8k_model():
    with pytest.raises(ScenarioError, match="max_model_len = 8192") as err:
        load(AZURE_CONV, max_model_len=8192)
    assert "AzureLLMInferenceTrace_conv.csv" in str(err.value) and err.value.value == 14050
    w = load(AZURE_CONV, max_model_len=8192, on_invalid="skip")
    assert (len(w.requests), w.num_skipped) == (19_365, 1)


@needs_traces
def test_vidur_csv_matches_the_azure_trace_it_was_derived_from():
    vidur, azure = load(VIDUR_CONV), load(AZURE_CONV)
    assert len(vidur.requests) == len(azure.requests)
    assert np.allclose(arrivals(vidur), arrivals(azure), atol=1e-5)


@needs_traces
def test_mooncake_requests_carry_their_block_hashes():
    w = load(MOONCAKE_CONV, max_model_len=131_072)
    assert len(w.requests) == 12_031
    r = w.requests[0]
    assert r.block_hashes is not None and r.block_hashes[0] == 0
    # One hash per 512-token block of the prompt (Mooncake's block size).
    assert all(len(r.block_hashes) == -(-r.num_prompt_tokens // 512) for r in w.requests)
    assert 58 * 60 < arrivals(w)[-1] < 60 * 60


@needs_traces
def test_length_only_trace_takes_arrivals_from_the_arrival_process():
    w = load(ARXIV, arrival=ArrivalConfig(process="poisson", rate=10.0))
    assert len(w.requests) == 28_257
    t = arrivals(w)
    assert t[0] == 0.0 and (len(t) - 1) / t[-1] == pytest.approx(10.0, rel=0.05)
    # Rows are used in file order: the first row of the file is the first request.
    assert (w.requests[0].num_prompt_tokens, w.requests[0].num_output_tokens) == (3772, 54)


@needs_traces
def test_vllm_sharegpt_trace_loads_300_requests_starting_at_zero():
    w = load(VLLM_SHAREGPT)
    assert len(w.requests) == 300 and arrivals(w)[0] == 0.0
    assert 28 < arrivals(w)[-1] < 30
    assert all(r.block_hashes is None for r in w.requests)


@needs_traces
def test_time_scale_halves_the_span():
    assert arrivals(load(VLLM_SHAREGPT, time_scale=2.0))[-1] == pytest.approx(arrivals(load(VLLM_SHAREGPT))[-1] / 2)


@needs_traces
def test_max_requests_and_max_duration_cut_the_trace():
    assert len(load(AZURE_CONV, max_requests=100).requests) == 100
    w = load(AZURE_CONV, max_duration_s=60.0)
    assert len(w.requests) == np.sum(arrivals(load(AZURE_CONV)) < 60.0) and arrivals(w)[-1] < 60.0
    assert len(load(AZURE_CONV, max_duration_s=60.0, max_requests=10).requests) == 10


# --- bad traces ---------------------------------------------------------------------------------


def test_negative_token_count_names_the_file_and_row(tmp_path):
    path = write_csv(tmp_path, "arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,10,5\n1.0,-3,5\n2.0,10,5\n")
    with pytest.raises(ScenarioError) as err:
        load(path)
    message = str(err.value)
    assert "bad.csv" in message and "row 2" in message and "-3" in message and "on_invalid: skip" in message


def test_missing_token_count_is_an_error(tmp_path):
    path = write_csv(tmp_path, "arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,10,5\n1.0,10,5\n2.0,10,\n")
    with pytest.raises(ScenarioError, match="bad.csv: row 3 = nan: num_decode_tokens is missing"):
        load(path)


def test_zero_output_tokens_and_fractional_counts_are_errors(tmp_path):
    zero = write_csv(tmp_path, "arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,10,0\n", "zero.csv")
    with pytest.raises(ScenarioError, match="row 1.*at least one output token"):
        load(zero)
    half = write_csv(tmp_path, "arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,10.5,3\n", "half.csv")
    with pytest.raises(ScenarioError, match="not an integer"):
        load(half)


def test_skip_mode_drops_and_counts_bad_rows(tmp_path):
    path = write_csv(tmp_path, "arrived_at,num_prefill_tokens,num_decode_tokens\n0.5,-3,5\n1.0,10,5\n2.0,x,5\n3.0,10,\n4.0,10,5\n")
    w = load(path, on_invalid="skip")
    assert w.num_skipped == 3
    assert [r.arrival_time for r in w.requests] == [0.0, 3.0]  # shifted to the first kept request
    assert [r.request_id for r in w.requests] == [0, 1]


def test_prompt_longer_than_the_model_is_an_error(tmp_path):
    path = write_csv(tmp_path, "arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,100,5\n1.0,4096,5\n")
    with pytest.raises(ScenarioError, match=r"row 2 = 4096: num_prefill_tokens is >= model.max_model_len = 4096.*raise model.max_model_len"):
        load(path, max_model_len=4096)
    assert load(path, max_model_len=4096, on_invalid="skip").num_skipped == 1


def test_output_is_cut_to_fit_the_model(tmp_path):
    path = write_csv(tmp_path, "arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,1000,100\n1.0,3000,2000\n")
    w = load(path, max_model_len=4096)
    assert [r.num_output_tokens for r in w.requests] == [100, 1096]
    assert w.num_truncated_outputs == 1


def test_rows_are_sorted_by_arrival_and_renumbered(tmp_path):
    path = write_csv(tmp_path, "arrived_at,num_prefill_tokens,num_decode_tokens\n5.0,1,1\n2.0,2,1\n2.0,3,1\n")
    w = load(path)
    assert [(r.request_id, r.arrival_time, r.num_prompt_tokens) for r in w.requests] == [(0, 0.0, 2), (1, 0.0, 3), (2, 3.0, 1)]


def test_missing_trace_says_where_traces_come_from(tmp_path):
    with pytest.raises(ScenarioError, match="workload.trace.*trace file not found.*AzurePublicDataset"):
        load(tmp_path / "nope.csv")


def test_unknown_columns_list_the_supported_ones(tmp_path):
    path = write_csv(tmp_path, "time,prompt,output\n0,1,1\n", "odd.csv")
    with pytest.raises(ScenarioError, match="odd.csv.*unrecognized.*ContextTokens.*num_prefill_tokens"):
        load(path)


def test_nothing_left_after_skipping_is_an_error_but_truncation_keeps_the_first(tmp_path):
    path = write_csv(tmp_path, "arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,-1,1\n")
    with pytest.raises(ScenarioError, match="no valid request"):
        load(path, on_invalid="skip")
    path = write_csv(tmp_path, "arrived_at,num_prefill_tokens,num_decode_tokens\n10.0,1,1\n", "late.csv")
    # The first request always arrives at 0, so max_duration_s can only empty a workload at 0.
    assert len(load(path, max_duration_s=1e-9).requests) == 1


# --- synthetic workloads ------------------------------------------------------------------------


def test_same_seed_same_workload_different_seed_different():
    def key(w: Workload) -> list[tuple]:
        return [(r.arrival_time, r.num_prompt_tokens, r.num_output_tokens) for r in w.requests]

    assert key(load(seed=1, num_requests=200)) == key(load(seed=1, num_requests=200))
    assert key(load(seed=1, num_requests=200)) != key(load(seed=2, num_requests=200))


def test_changing_the_output_distribution_leaves_arrivals_and_prompts_alone():
    a = load(seed=3, num_requests=200)
    b = load(seed=3, num_requests=200, output_tokens=LengthConfig(distribution="uniform", min=1, max=10))
    assert [(r.arrival_time, r.num_prompt_tokens) for r in a.requests] == [(r.arrival_time, r.num_prompt_tokens) for r in b.requests]
    assert all(1 <= r.num_output_tokens <= 10 for r in b.requests)


def test_lognormal_recovers_its_mean_and_median():
    lengths = LengthConfig(distribution="lognormal", mean=1155, median=1020, max=None)
    w = load(num_requests=20_000, prompt_tokens=lengths, max_model_len=10**9)
    prompts = np.array([r.num_prompt_tokens for r in w.requests])
    assert prompts.mean() == pytest.approx(1155, rel=0.03)
    assert np.median(prompts) == pytest.approx(1020, rel=0.03)


def test_lengths_are_clipped_to_min_and_max():
    w = load(num_requests=2000, output_tokens=LengthConfig(mean=211, median=129, min=16, max=300))
    outputs = [r.num_output_tokens for r in w.requests]
    assert min(outputs) == 16 and max(outputs) == 300
    fixed = load(num_requests=5, prompt_tokens=LengthConfig(distribution="fixed", value=128))
    assert {r.num_prompt_tokens for r in fixed.requests} == {128}


def test_gamma_arrivals_have_the_requested_cv_and_rate():
    w = load(num_requests=20_000, arrival=ArrivalConfig(process="gamma", rate=4.0, cv=3.0))
    gaps = np.diff(arrivals(w))
    assert gaps.std() / gaps.mean() == pytest.approx(3.0, rel=0.10)
    assert 1 / gaps.mean() == pytest.approx(4.0, rel=0.10)


def test_poisson_arrivals_have_the_requested_rate():
    w = load(num_requests=20_000, arrival=ArrivalConfig(process="poisson", rate=5.5))
    t = arrivals(w)
    assert t[0] == 0.0 and (len(t) - 1) / t[-1] == pytest.approx(5.5, rel=0.05)
    assert np.diff(t).std() / np.diff(t).mean() == pytest.approx(1.0, rel=0.05)


def test_synthetic_time_scale_raises_the_rate():
    t = arrivals(load(num_requests=5000, arrival=ArrivalConfig(rate=2.0), time_scale=2.0))
    assert (len(t) - 1) / t[-1] == pytest.approx(4.0, rel=0.05)


@needs_traces
def test_empirical_lengths_sample_a_trace_column():
    lengths = LengthConfig(distribution="empirical", file=str(AZURE_CONV))
    w = load(num_requests=5000, prompt_tokens=lengths, output_tokens=lengths)
    prompts = {r.num_prompt_tokens for r in w.requests}
    assert w.source == "synthetic" and len(prompts) > 500
    # Azure conversation prompts average about 1155 tokens (Splitwise, Table 2).
    assert np.mean([r.num_prompt_tokens for r in w.requests]) == pytest.approx(1155, rel=0.1)
    assert max(r.num_output_tokens for r in w.requests) <= 1000


def test_synthetic_prompt_too_long_for_the_model(tmp_path):
    lengths = LengthConfig(distribution="fixed", value=5000)
    with pytest.raises(ScenarioError, match="workload.prompt_tokens = 5000.*max_model_len = 4096"):
        load(num_requests=3, prompt_tokens=lengths, max_model_len=4096)
