"""Roofline sanity check: Llama-3-8B on one H100-SXM, a batch-1 decode step and a 2,000-token prefill.

A batch-1 decode step reads all ~16 GB of bf16 weights once, so at 3.35 TB/s it cannot take less
than ~4.8 ms; a 2,000-token prefill does ~2 x 8.03e9 x 2000 = 32 TFLOP of GEMMs, ~32 ms at the
989 TFLOP/s peak. Prints servesim's predicted step times and their breakdown.

    python benchmarks/roofline_sanity.py
"""

from simulator.engine.batch import Batch
from simulator.cost_models.roofline import RooflineCostModel
from simulator.engine.request import Request
from simulator.scenario import RooflineConfig
from simulator.specs.gpu import GPUS
from simulator.specs.model import bundled_model_spec


def main() -> None:
    model, gpu, params = bundled_model_spec("llama-3-8b"), GPUS["h100-sxm"], RooflineConfig()
    cost = RooflineCostModel(model, gpu, 1, 1, params)
    weights = model.num_params * 2
    print(f"Llama-3-8B: {model.num_params / 1e9:.2f} B parameters, {weights / 1e9:.2f} GB of bf16 weights")
    print(f"  weights / HBM bandwidth = {weights / gpu.memory_bandwidth * 1e3:.2f} ms; 2,000-token GEMM FLOPs / peak = {2 * model.num_params * 2000 / gpu.bf16_flops * 1e3:.1f} ms")

    decode = Request(0, 0.0, 2000, 10)
    decode.num_computed_tokens, decode.num_generated_tokens = 2000, 1
    batch = Batch()
    batch.add(decode, 1)
    print(f"decode, batch 1, context 2,001: {cost.step_time(batch) * 1e3:.2f} ms "
          f"(layers w/o attention {model.num_layers * cost.layer_token_time(1) * 1e3:.2f} ms, attention {model.num_layers * cost.attention_decode_time(1, 2001) * 1e3:.3f} ms, "
          f"lm_head+sampling {cost.sample_time(1) * 1e3:.2f} ms, CPU {params.cpu_overhead_s * 1e3 + params.cpu_overhead_per_request_s * 1e3:.2f} ms)")

    batch = Batch()
    batch.add(Request(0, 0.0, 2000, 10), 2000)
    print(f"prefill, 2,000 tokens: {cost.step_time(batch) * 1e3:.2f} ms "
          f"(layers w/o attention {model.num_layers * cost.layer_token_time(2000) * 1e3:.2f} ms, attention {model.num_layers * cost.attention_prefill_time([2000], [0]) * 1e3:.2f} ms)")
    gemm = cost.gemm_time(2000, 4096, 14336 * 2)
    print(f"  e.g. gate/up GEMM [2000 x 4096] x [4096 x 28672]: {gemm * 1e3:.3f} ms -> compute-bound: "
          f"{2 * 2000 * 4096 * 28672 / gemm / 1e12:.0f} TFLOP/s achieved of {gpu.bf16_flops / 1e12:.0f}")


if __name__ == "__main__":
    main()
