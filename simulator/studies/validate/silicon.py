"""aiconfigurator-core's silicon sample as measured runs (``servesim validate aiconfigurator:silicon_sample``).

``systems/silicon_sample.csv`` inside the installed package (Apache-2.0) holds measured serving
runs: engine and version, GPU system, model, precision, TP, fixed input and output lengths, a
concurrency (``batch_size``: a closed loop of that many clients) and the mean TTFT and TPOT in
ms. The rows servesim can simulate are the aggregated (colocated) vLLM runs of the dense Llama
models on GPUs with imported vLLM tables; each becomes a run priced by the imported profile of
its GPU (``aiconfigurator:<system>/vllm/<the package's vLLM version for it>``) with servesim's
vLLM v1 defaults, ``waves`` requests per client, fixed lengths.
"""

from __future__ import annotations

from simulator.errors import ScenarioError
from simulator.studies.validate.run_format import MeasuredRun, parse_run

NAME = "aiconfigurator:silicon_sample"
MODELS = {"meta-llama/Llama-3.1-70B": "llama-3.1-70b", "nvidia/Llama-3.1-8B-Instruct-FP8": "llama-3.1-8b",
          "meta-llama/Llama-3.1-8B-Instruct": "llama-3.1-8b"}
QUANT = {"fp8": "fp8", "bf16": "none"}


def silicon_runs(waves: int = 4, systems: tuple[str, ...] = ("h100_sxm", "h200_sxm")) -> list[MeasuredRun]:
    """The simulable rows of the silicon sample as runs (module docstring).

    Raises:
        ScenarioError: aiconfigurator-core is not installed (one line naming the extra).
    """
    import pandas as pd

    from profiler.imports.aiconfigurator import available, package_root, package_version
    from simulator.specs.gpu import GPUS

    root = package_root(NAME)
    have = available(root)
    gpu_of = {g.aiconfigurator_system: g.name for g in GPUS.values() if g.aiconfigurator_system}
    d = pd.read_csv(root / "silicon_sample.csv")
    d = d[(d.backend == "vllm") & (d["mode"] == "agg") & d.system.isin(list(systems)) & d.model_path.isin(list(MODELS)) & d.precision.isin(list(QUANT))]
    runs = []
    for r in d.itertuples():
        if r.system not in gpu_of or "vllm" not in have.get(r.system, {}):
            continue
        conc, version = int(r.batch_size), have[r.system]["vllm"][-1]
        runs.append(parse_run({
            "name": str(r.id), "description": f"silicon sample row {r.id}",
            "source": {"name": f"aiconfigurator-core {package_version()} systems/silicon_sample.csv", "licence": "Apache-2.0",
                       "url": "https://pypi.org/project/aiconfigurator-core/"},
            "engine": {"name": "vllm", "version": None if pd.isna(r.backend_version) else str(r.backend_version)},
            "hardware": f"{int(r.tp_size)} x {r.system}",
            "scenario": {"set": {
                "model.name": MODELS[r.model_path], "model.quantization": QUANT[r.precision], "hardware.gpu": gpu_of[r.system],
                "hardware.profile": f"aiconfigurator:{r.system}/vllm/{version}", "cluster.tensor_parallel_size": int(r.tp_size),
                "scheduler.name": "vllm_v1", "workload.num_requests": waves * conc, "workload.concurrency": conc,
                "workload.prompt_tokens": {"distribution": "fixed", "value": int(r.isl)},
                "workload.output_tokens": {"distribution": "fixed", "value": int(r.osl)}, "slo.ttft_s": None, "slo.tpot_s": None}},
            "measured": {"ttft_s": {"mean": float(r.silicon_ttft_ms) / 1e3}, "tpot_s": {"mean": float(r.silicon_tpot_ms) / 1e3}},
        }, NAME))
    if not runs:
        raise ScenarioError(NAME, "", ..., "has no row servesim can simulate in this package version", "use another set of runs")
    return runs
