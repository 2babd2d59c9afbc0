"""Does the profiled cost model reproduce measured step times? (CPU; the tiny Llama model by default.)

Runs real iterations of the model's whole layer stack (``profiler.model.LayerStack``: the
same PyTorch operators the profiler times, paged KV cache, all layers, sampling, host input
preparation) at several batch compositions (pure prefill, chunked prefill, pure decode, mixed),
and compares each measured step time with ``ProfiledCostModel.step_time`` of the equivalent
``Batch``. The step is timed like the bundle's operators (same thread count, same clock: the
thread's CPU time with one torch thread) and
compared in the statistic the bundle was fitted to (``servesim fit --target``: the median by
default); minimum, median and mean are all printed, each the median over ``--rounds`` rounds
that visit every composition in turn.

    python benchmarks/validate_profiled_cpu.py --bundle profiles/cpu-tiny-llama
    python benchmarks/validate_profiled_cpu.py --bundle /tmp/cpu-tiny --profile   # profile + fit first
    python benchmarks/validate_profiled_cpu.py --model profiler/data/small-llama.json --bundle /tmp/cpu-small --profile --repeats 3
    python benchmarks/validate_profiled_cpu.py --bundle /tmp/cpu-tiny --per-operator   # where each step's time goes

Prints one row per composition: measured (min, median, mean), predicted, error (%).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from profiler import TINY_MODEL_CONFIG  # noqa: E402
from simulator.engine.batch import Batch  # noqa: E402
from simulator.cost_models.profiled import ProfiledCostModel  # noqa: E402
from simulator.engine.request import Request  # noqa: E402
from simulator.scenario import RooflineConfig  # noqa: E402
from simulator.specs.gpu import GPUS  # noqa: E402
from simulator.specs.model import model_spec_from_hf_config  # noqa: E402

# name -> list of (prefix tokens, new tokens, kind): "prefill" (fresh or final chunk: samples),
# "chunk" (a middle chunk: no sample), "decode" (prefix = context - 1, one new token).
COMPOSITIONS: dict[str, list[tuple[int, int, str]]] = {
    "prefill 1 x 512": [(0, 512, "prefill")],
    "prefill 4 x 96": [(0, 96, "prefill")] * 4,
    "chunked prefill 256 after 512 cached": [(512, 256, "chunk")],
    "decode 1 x ctx 100": [(99, 1, "decode")],
    "decode 16 x ctx 256": [(255, 1, "decode")] * 16,
    "decode 64 x ctx 600": [(599, 1, "decode")] * 64,
    "mixed: prefill 256 + 32 decodes ctx 300": [(0, 256, "prefill")] + [(299, 1, "decode")] * 32,
    "mixed: chunk 128 after 256 + 48 decodes ctx 700": [(256, 128, "chunk")] + [(699, 1, "decode")] * 48,
}


def batch_of(entries: list[tuple[int, int, str]]) -> Batch:
    """The simulator's Batch for a composition (requests with counters set to match)."""
    batch = Batch()
    for i, (prefix, new, kind) in enumerate(entries):
        if kind == "decode":
            r = Request(i, 0.0, num_prompt_tokens=prefix - 4, num_output_tokens=100)
            r.num_generated_tokens, r.num_computed_tokens = 5, prefix
        else:
            r = Request(i, 0.0, num_prompt_tokens=prefix + new + (100 if kind == "chunk" else 0), num_output_tokens=10)
            r.num_computed_tokens = prefix
        batch.add(r, new)
    return batch


def per_operator(stack, cost: ProfiledCostModel, name: str, spec: list[tuple[int, int, str]], min_time_s: float) -> dict[str, dict[str, float]]:
    """Each operator's mean thread time inside real steps of one composition against ``step_breakdown`` (s); printed too.

    The first call of an operator inside a step follows a different operator, as in serving,
    so this shows where isolated measurements and the step part ways.
    """
    from profiler.model import Entry

    entries = [Entry(prefix, new, kind != "chunk") for prefix, new, kind in spec]
    for _ in range(2):
        stack.step(entries)
    times: dict[str, float] = {}
    num_steps, start = 0, time.thread_time()
    while num_steps < 5 or time.thread_time() - start < min_time_s:
        stack.step(entries, times)
        num_steps += 1
    predicted = cost.step_breakdown(batch_of(spec))
    print(f"\n{name}: per operator over {num_steps} steps (ms per step)")
    out = {}
    for op in sorted(set(times) | set(predicted), key=lambda k: -times.get(k, 0.0)):
        m, p = times.get(op, 0.0) / num_steps, predicted.get(op, 0.0)
        out[op] = {"measured_s": m, "predicted_s": p}
        error = f"{100 * (p - m) / m:+8.1f}" if m > 0 else "       -"
        print(f"  {op:20s} {m * 1e3:9.3f} {p * 1e3:9.3f} {error} %")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, required=True, help="a CPU profile bundle of --model")
    parser.add_argument("--model", type=Path, default=TINY_MODEL_CONFIG, help="the model's Hugging Face config.json (default: the tiny Llama)")
    parser.add_argument("--profile", action="store_true", help="profile (resume) and fit the bundle first")
    parser.add_argument("--repeats", type=int, default=1, help="with --profile: passes over the sweep")
    parser.add_argument("--min-time-s", type=float, default=0.2, help="least timed seconds per composition and round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds over all compositions")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--per-operator", action="store_true",
                        help="also time every operator inside the real steps and compare with the prediction's breakdown")
    args = parser.parse_args()
    if args.profile:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "simulator.cli", "profile", "--model", str(args.model), "--device", "cpu", "--out", str(args.bundle),
                        "--repeats", str(args.repeats), "-q"], check=True)
        t1 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "simulator.cli", "fit", str(args.bundle), "-q"], check=True)
        print(f"profile {t1 - t0:.1f} s, fit {time.perf_counter() - t1:.1f} s")

    import torch

    from profiler.model import Entry, LayerStack
    from profiler.timer import steady_host_allocator, time_cpu

    manifest = json.loads((args.bundle / "profile.json").read_text())
    torch.set_num_threads(manifest.get("threads") or 1)
    steady_host_allocator()  # as `servesim profile` runs the operators
    clock = "thread" if torch.get_num_threads() == 1 else "wall"  # as the profiler timed the operators
    model = model_spec_from_hf_config(args.model, name=args.model.stem)
    cost = ProfiledCostModel(args.bundle, model, GPUS["h100-sxm"], 1, 1, RooflineConfig(), max_num_batched_tokens=2048)
    stat = json.loads((args.bundle / "runtime_model.json").read_text()).get("target", "median_s")
    stack = LayerStack(model, max_tokens_per_request=1024, max_requests=64, device=torch.device("cpu"), dtype=torch.float32)
    rows = []
    print(f"{model.name} ({model.num_layers} layers), {torch.get_num_threads()} thread(s), {clock} clock; bundle fitted to {stat}")
    print(f"{'composition':48s} {'min ms':>8s} {'median ms':>9s} {'mean ms':>8s} {'pred ms':>8s} {'error %':>8s}")
    # Rounds over all compositions, so a burst of load from other processes on a shared host
    # hits every composition alike; each composition's statistic is its median over the rounds.
    timings: dict[str, list] = {name: [] for name in COMPOSITIONS}
    for _ in range(args.rounds):
        for name, spec in COMPOSITIONS.items():
            entries = [Entry(prefix, new, kind != "chunk") for prefix, new, kind in spec]
            timings[name].append(time_cpu(lambda: stack.step(entries), min_repeats=5, min_time_s=args.min_time_s, clock=clock))
    for name, spec in COMPOSITIONS.items():
        per_round = timings[name]
        low, mid, avg = (statistics.median(getattr(t, a) for t in per_round) for a in ("min_s", "median_s", "mean_s"))
        measured = statistics.median(getattr(t, stat) for t in per_round)
        predicted = cost.step_time(batch_of(spec))
        row = {"composition": name, "measured_min_s": low, "measured_median_s": mid, "measured_mean_s": avg,
               "predicted_s": predicted, "fitted_statistic": stat, "error_pct": 100 * (predicted - measured) / measured,
               "num_samples": sum(t.num_samples for t in per_round), "rounds": len(per_round)}
        rows.append(row)
        print(f"{name:48s} {low * 1e3:8.2f} {mid * 1e3:9.2f} {avg * 1e3:8.2f} {predicted * 1e3:8.2f} {row['error_pct']:8.1f}")
    errors = sorted(abs(r["error_pct"]) for r in rows)
    print(f"|error| vs the measured {stat.removesuffix('_s')}: median {errors[len(errors) // 2]:.1f} %, max {errors[-1]:.1f} %")
    if args.per_operator:
        for name, row in zip(COMPOSITIONS, rows):
            row["operators"] = per_operator(stack, cost, name, COMPOSITIONS[name], args.min_time_s)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
