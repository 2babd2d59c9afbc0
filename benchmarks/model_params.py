"""Parameter counts and weight bytes of every bundled model against the published figures.

For each bundled spec (``simulator/specs/models/*.json``) prints servesim's total and active
(per-token) parameter counts and bf16 weight bytes beside the figures its publisher gives, with
the % difference, and whether the difference lies within the rounding of the published figure
(half a unit of its last digit: "13B" covers 12.5-13.5B). Where a publisher counts active
parameters without the token embedding (a lookup, not a matrix product: gpt-oss's model card), the
comparison does the same. gpt-oss's checkpoint size is compared in the checkpoint's own format
(MXFP4 expert weights, 4.25 bits each: 4-bit values and one 8-bit scale per 32, OCP Microscaling
Formats spec v1.0; everything else bf16).

    python benchmarks/model_params.py
"""

from __future__ import annotations

from simulator.specs.model import ModelSpec, bundled_model_names, bundled_model_spec

GIB = 1024**3
MXFP4_BYTES = 4.25 / 8
# name: (total, active or None, active counted without the embedding, checkpoint GiB or None, source). Figures in
# billions as published (strings keep their precision).
PUBLISHED: dict[str, tuple[str, str | None, bool, str | None, str]] = {
    "llama-2-7b": ("6.74", None, False, None, "huggingface.co/meta-llama/Llama-2-7b-hf (safetensors count), as tests/test_scenarios.py records it"),
    "llama-2-70b": ("68.98", None, False, None, "huggingface.co/meta-llama/Llama-2-70b-hf (safetensors count), as tests/test_scenarios.py records it"),
    "llama-3-8b": ("8.03", None, False, None, "huggingface.co/meta-llama/Meta-Llama-3-8B (safetensors count), as tests/test_scenarios.py records it"),
    "llama-3-70b": ("70.55", None, False, None, "huggingface.co/meta-llama/Meta-Llama-3-70B (safetensors count), as tests/test_scenarios.py records it"),
    "llama-3.1-8b": ("8.03", None, False, None, "huggingface.co/meta-llama/Llama-3.1-8B (safetensors count; the layers are Llama-3-8B's)"),
    "llama-3.1-70b": ("70.55", None, False, None, "huggingface.co/meta-llama/Llama-3.1-70B (safetensors count; the layers are Llama-3-70B's)"),
    "mistral-7b": ("7.24", None, False, None, "huggingface.co/mistralai/Mistral-7B-v0.1 (safetensors count), as tests/test_scenarios.py records it"),
    "qwen2.5-7b": ("7.62", None, False, None, "huggingface.co/Qwen/Qwen2.5-7B-Instruct, as tests/test_scenarios.py records it"),
    "qwen2.5-32b": ("32.76", None, False, None, "huggingface.co/Qwen/Qwen2.5-32B-Instruct, as tests/test_scenarios.py records it"),
    "opt-13b": ("13", None, False, None, "Zhang et al. 2022, OPT, Table 1 (the nominal size)"),
    "codellama-34b": ("34", None, False, None, "Roziere et al. 2023, Code Llama, Sec. 2 (the nominal size)"),
    "qwen3-8b": ("8.2", None, False, None, "huggingface.co/Qwen/Qwen3-8B model card: 8.2B"),
    "qwen3-14b": ("14.8", None, False, None, "huggingface.co/Qwen/Qwen3-14B model card: 14.8B"),
    "qwen3-32b": ("32.8", None, False, None, "huggingface.co/Qwen/Qwen3-32B model card: 32.8B"),
    "mixtral-8x7b": ("46.7", "12.9", False, None, "mistral.ai/news/mixtral-of-experts: 46.7B total, 12.9B per token"),
    "mixtral-8x22b": ("141", "39", False, None, "mistral.ai/news/mixtral-8x22b: 141B total, 39B active"),
    "qwen3-30b-a3b": ("30.5", "3.3", False, None, "huggingface.co/Qwen/Qwen3-30B-A3B model card: 30.5B total, 3.3B activated"),
    "qwen3-235b-a22b": ("235", "22", False, None, "huggingface.co/Qwen/Qwen3-235B-A22B model card: 235B total, 22B activated"),
    "deepseek-v3": ("671", "37", False, None, "DeepSeek-AI 2024, DeepSeek-V3 technical report (arXiv:2412.19437), abstract: 671B total, 37B activated"),
    "gpt-oss-20b": ("20.91", "3.61", True, "12.8", "OpenAI 2025, gpt-oss-120b & gpt-oss-20b model card, Table 1: 20.91B total, 3.61B active, 12.8 GiB"),
    "gpt-oss-120b": ("116.83", "5.13", True, "60.8", "OpenAI 2025, gpt-oss-120b & gpt-oss-20b model card, Table 1: 116.83B total, 5.13B active, 60.8 GiB"),
    "llama-4-scout": ("109", "17", False, None, "huggingface.co/meta-llama/Llama-4-Scout-17B-16E-Instruct model card: 17B activated, 109B total (with the vision encoder)"),
}


def half_unit(figure: str) -> float:
    """Half a unit of the last digit of a published figure, in the figure's unit."""
    decimals = len(figure.split(".")[1]) if "." in figure else 0
    return 0.5 * 10.0 ** -decimals


def checkpoint_gib(spec: ModelSpec) -> float:
    """gpt-oss's checkpoint: MXFP4 expert weight matrices (biases stay bf16), everything else bf16 (GiB)."""
    moe = spec.moe
    assert moe is not None, "only the MXFP4 MoE checkpoints are compared"
    expert_weights = spec.num_moe_layers * moe.num_experts * 3 * spec.hidden_size * moe.expert_intermediate_size
    return (expert_weights * MXFP4_BYTES + (spec.num_params - expert_weights) * 2) / GIB


def compare(ours: float, figure: str | None) -> tuple[str, float | None, bool]:
    """(published, % difference, within the figure's rounding) of a count in billions."""
    if figure is None:
        return "-", None, True
    published = float(figure)
    return figure, 100 * (ours - published) / published, abs(ours - published) <= half_unit(figure) + 1e-9


def main() -> None:
    header = f"{'model':16s} {'family':11s} {'total B':>8s} {'publ.':>7s} {'diff %':>7s}  {'active B':>8s} {'publ.':>6s} {'diff %':>7s}  {'bf16 GiB':>8s} {'ckpt GiB':>8s} {'publ.':>6s}"
    print(header)
    print("-" * len(header))
    worst = 0.0
    outside: list[str] = []
    for name in bundled_model_names():
        spec = bundled_model_spec(name)
        assert spec is not None
        total_b, active_fig, active_no_embedding, ckpt_fig, _ = PUBLISHED[name]
        total = spec.num_params / 1e9
        active = (spec.num_active_params - (spec.vocab_size * spec.embedding_dim if active_no_embedding else 0)) / 1e9
        t_fig, t_diff, t_ok = compare(total, total_b)
        a_fig, a_diff, a_ok = compare(active, active_fig)
        ckpt = f"{checkpoint_gib(spec):8.2f}" if ckpt_fig else f"{'-':>8s}"
        for diff in (t_diff, a_diff):
            if diff is not None:
                worst = max(worst, abs(diff))
        if not (t_ok and a_ok):
            outside.append(name)
        a_text = f"{a_diff:+7.2f}" if a_diff is not None else f"{'-':>7s}"
        active_mark = "*" if active_no_embedding else " "
        print(f"{name:16s} {spec.architecture:11s} {total:8.2f} {t_fig:>7s} {t_diff:+7.2f}  {active:8.2f}{active_mark}{a_fig:>6s} {a_text}  "
              f"{spec.num_params * 2 / GIB:8.1f} {ckpt} {ckpt_fig or '-':>6s}")
    print("\n* active without the token embedding, as the publisher counts it")
    print(f"largest |difference|: {worst:.2f} %; outside the published figure's rounding: {', '.join(outside) or 'none'}")
    print("\nsources:")
    for name in bundled_model_names():
        print(f"  {name}: {PUBLISHED[name][4]}")


if __name__ == "__main__":
    main()
