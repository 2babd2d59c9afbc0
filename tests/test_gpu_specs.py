"""GPUs: bundled datasheet entries and GPU spec files, resolved one way everywhere.

A scenario names a bundled GPU or a YAML spec file; a spec file with the H100 PCIe's figures
prices steps exactly as the bundled h100-pcie does, and every mistake in it is one line.
"""

import dataclasses
import importlib.util
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from simulator.cli import main
from simulator.engine.deployment import resolve_deployment
from simulator.errors import ScenarioError
from simulator.studies.plan import enumerate_candidates, load_plan
from simulator.scenario import load_scenario
from simulator.engine.simulation import simulate
from simulator.specs.gpu import GPUS
from simulator.specs.gpu_file import load_gpu_file, resolve_gpu
from tests.conftest import REPO

EXAMPLE = REPO / "scenarios" / "gpus" / "example-gpu.yaml"
SMALL_WORKLOAD = ["workload.num_requests=200", "workload.arrival.rate=2", "model.max_model_len=4096"]


def example_fields() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def write_gpu(path: Path, fields: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(fields, sort_keys=False))
    return path


def summary(overrides: list[str]) -> dict:
    result = simulate(load_scenario(None, SMALL_WORKLOAD + overrides), progress=False).summary
    result.pop("wall_time_s")  # measures the host, not the simulation
    return result


# --- spec files ------------------------------------------------------------------------------


def test_example_file_holds_the_bundled_h100_pcie_figures():
    # The example is the H100 PCIe datasheet in the file's units (GB, GB/s, TFLOPS, TOPS).
    gpu, bundled = load_gpu_file(EXAMPLE), GPUS["h100-pcie"]
    assert gpu.name == "h100-pcie-example" and gpu.link_kind == "pcie" and gpu.aiconfigurator_system == "h100_pcie"
    assert gpu.memory_bytes == 80e9 and gpu.memory_bandwidth == 2e12 and gpu.bf16_flops == 756.5e12
    for field in ("bf16_flops", "fp8_flops", "int8_ops", "memory_bandwidth", "memory_bytes", "link_bandwidth",
                  "link_latency_s", "link_kind", "pcie_bandwidth"):
        assert getattr(gpu, field) == pytest.approx(getattr(bundled, field)), field
    assert "datasheet" in gpu.source


def test_scenario_on_a_spec_file_deploys_as_on_the_bundled_gpu_and_runs(tmp_path):
    # A relative hardware.gpu path is relative to the scenario file, wherever the run starts.
    write_gpu(tmp_path / "gpus" / "mine.yaml", example_fields() | {"name": "mine"})
    scenario_file = tmp_path / "s.yaml"
    scenario_file.write_text("hardware: {gpu: gpus/mine.yaml}\n")
    scenario = load_scenario(scenario_file, SMALL_WORKLOAD)
    assert scenario.hardware.gpu == str(tmp_path / "gpus" / "mine.yaml")
    on_file = resolve_deployment(scenario, str(scenario_file))
    bundled = resolve_deployment(load_scenario(None, SMALL_WORKLOAD + ["hardware.gpu=h100-pcie"]))
    assert on_file.gpu.name == "mine"
    assert dataclasses.replace(on_file, gpu=bundled.gpu) == bundled  # same memory plan, KV blocks
    result = simulate(scenario, str(scenario_file), progress=False).summary
    assert result["num_completed"] == 200 and result["num_kv_blocks_per_replica"] == bundled.num_kv_blocks


def test_interconnect_of_a_spec_file_prices_the_all_reduce(tmp_path):
    # Same H100 figures, NVLink (450 GB/s, 4.3 us) against PCIe (64 GB/s, 8 us): only TP > 1
    # pays for the link, so TP1 runs are identical and TP2 decodes are slower over PCIe.
    nvlink = write_gpu(tmp_path / "nvlink.yaml", example_fields() | {"interconnect": {"kind": "nvlink", "bandwidth_gb_per_s": 450, "latency_s": 4.3e-6}})
    pcie = write_gpu(tmp_path / "pcie.yaml", example_fields())
    tp1 = [summary([f"hardware.gpu={p}"]) for p in (nvlink, pcie)]
    assert tp1[0]["tpot_s"] == tp1[1]["tpot_s"]
    tp2 = [summary([f"hardware.gpu={p}", "cluster.tensor_parallel_size=2"]) for p in (nvlink, pcie)]
    assert tp2[1]["tpot_s"]["p50"] > tp2[0]["tpot_s"]["p50"]


def test_names_are_case_insensitive_and_unknown_names_list_the_bundled_ones():
    assert resolve_gpu("L4", "s.yaml") is GPUS["l4"]
    with pytest.raises(ScenarioError) as info:
        resolve_gpu("tpu-v5", "s.yaml")
    assert info.value.field == "hardware.gpu" and "rtx-pro-6000-server" in info.value.fix and ".yaml" in info.value.fix


def test_a_spec_file_without_fp8_refuses_fp8_quantization(tmp_path):
    gpu = write_gpu(tmp_path / "old.yaml", example_fields() | {"fp8_tflops": None})
    assert load_gpu_file(gpu).fp8_flops is None
    with pytest.raises(ScenarioError, match="no FP8 tensor cores"):
        resolve_deployment(load_scenario(None, [f"hardware.gpu={gpu}", "model.quantization=fp8"]))


def test_a_plan_searches_a_spec_file_relative_to_it(tmp_path):
    write_gpu(tmp_path / "gpus" / "mine.yaml", example_fields())
    plan_text = "target_rate_rps: 1\nslo: {percentiles: {ttft_s: {p90: 2.0}}}\nsearch: {gpus: [h100-sxm, gpus/mine.yaml]}\n"
    plan_file = tmp_path / "plan.yaml"
    plan_file.write_text(plan_text + "prices: {gpus/mine.yaml: 2.0}\n")
    candidates = enumerate_candidates(load_plan(plan_file))
    assert [c.scenario.hardware.gpu for c in candidates] == ["h100-sxm", str(tmp_path / "gpus" / "mine.yaml")]
    assert all(not c.reason for c in candidates)
    plan_file.write_text(plan_text)  # a spec file has no bundled price
    with pytest.raises(ScenarioError, match="no bundled price"):
        load_plan(plan_file)


# --- every mistake in a spec file is one line, exit code 2 -------------------------------------


def _without(key: str) -> dict:
    fields = example_fields()
    del fields[key]
    return fields


BAD_SPECS = {
    "missing field": (_without("memory_gb"), ["gpu.yaml", "memory_gb", "missing field", "GB"]),
    "missing fp8": (_without("fp8_tflops"), ["fp8_tflops", "missing field", "null"]),
    "zero field": (example_fields() | {"memory_bandwidth_gb_per_s": 0}, ["gpu.yaml", "memory_bandwidth_gb_per_s = 0", "positive"]),
    "negative field": (example_fields() | {"interconnect": {"kind": "pcie", "bandwidth_gb_per_s": 64, "latency_s": -8e-6}}, ["interconnect.latency_s = -8e-06", "positive"]),
    "wrong type": (example_fields() | {"bf16_tflops": "fast"}, ["bf16_tflops = 'fast'", "number"]),
    "yes/no for a number": (example_fields() | {"int8_tops": True}, ["int8_tops = True", "not a number"]),
    "unknown field": (example_fields() | {"hbm_gb": 80}, ["gpu.yaml", "hbm_gb", "unknown field", "memory_gb"]),
    "unknown interconnect kind": (example_fields() | {"interconnect": {"kind": "infiniband", "bandwidth_gb_per_s": 50, "latency_s": 5e-6}}, ["interconnect.kind = 'infiniband'", "nvlink or pcie"]),
    "interconnect not a section": (example_fields() | {"interconnect": "pcie"}, ["interconnect = 'pcie'", "not a section"]),
    "empty source": (example_fields() | {"source": ""}, ["source", "datasheet"]),
    "not a mapping": ([1, 2], ["gpu.yaml", "not a mapping"]),
}


def check_one_line(tmp_path: Path, gpu_value: str, expected: list[str]) -> None:
    scenario = tmp_path / "s.yaml"
    scenario.write_text(f"hardware: {{gpu: {gpu_value}}}\n")
    result = CliRunner().invoke(main, ["check", str(scenario)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in expected:
        assert fragment in lines[0], lines[0]


@pytest.mark.parametrize("case", list(BAD_SPECS))
def test_bad_spec_file_one_line_exit_2(tmp_path, case):
    fields, expected = BAD_SPECS[case]
    write_gpu(tmp_path / "gpu.yaml", fields)
    check_one_line(tmp_path, "gpu.yaml", expected)


def test_unreadable_malformed_or_missing_spec_file_one_line_exit_2(tmp_path):
    (tmp_path / "gpu.yaml").write_bytes(b"memory_gb: \xff\xfe\n")  # not UTF-8 text
    check_one_line(tmp_path, "gpu.yaml", ["gpu.yaml", "cannot read"])
    (tmp_path / "gpu.yaml").write_text("memory_gb: [80\n")
    check_one_line(tmp_path, "gpu.yaml", ["gpu.yaml", "malformed YAML"])
    check_one_line(tmp_path, "none.yaml", ["s.yaml", "hardware.gpu", "none.yaml", "not found"])
    check_one_line(tmp_path, "tpu-v5", ["hardware.gpu = 'tpu-v5'", "unknown GPU", "h100-sxm"])


def test_a_good_spec_file_checks_ok(tmp_path):
    write_gpu(tmp_path / "gpu.yaml", example_fields())
    (tmp_path / "s.yaml").write_text("hardware: {gpu: gpu.yaml}\n")
    result = CliRunner().invoke(main, ["check", str(tmp_path / "s.yaml")])
    assert result.exit_code == 0, result.output
    assert "on h100-pcie-example" in result.output


def test_list_shows_every_gpu_with_its_link():
    result = CliRunner().invoke(main, ["list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    table = result.output.partition("GPUs (dense peaks)")[2].partition("hardware.gpu also takes")[0]
    rows = {line.split("│")[1].strip(): line for line in table.splitlines() if line.count("│") > 2}
    for name, gpu in GPUS.items():
        assert name in rows and gpu.link_kind in rows[name]


# --- the bundled table ---------------------------------------------------------------------


NEW_GPUS = {"rtx-pro-6000-server", "l4", "h100-pcie", "a100-40gb-sxm", "a100-80gb-pcie", "b300"}
OLD_GPUS = {"a100-80gb-sxm", "h100-sxm", "h200", "l40s", "b200", "rtx-4090"}


def test_bundled_gpus_are_sourced_positive_and_link_consistent():
    assert set(GPUS) >= NEW_GPUS | OLD_GPUS
    for name, gpu in GPUS.items():
        assert gpu.name == name and len(gpu.source) > 40, name
        numbers = [gpu.bf16_flops, gpu.int8_ops, gpu.memory_bandwidth, gpu.memory_bytes, gpu.link_bandwidth, gpu.link_latency_s, gpu.pcie_bandwidth]
        assert all(x > 0 for x in numbers) and (gpu.fp8_flops is None or gpu.fp8_flops > 0), name
        assert gpu.link_kind in ("nvlink", "pcie"), name
        if gpu.link_kind == "pcie":  # all-reduce over the host link
            assert gpu.link_bandwidth == gpu.pcie_bandwidth, name
        else:
            assert gpu.link_bandwidth > gpu.pcie_bandwidth, name


AIC_SYSTEMS = {"a100-80gb-sxm": "a100_sxm", "h100-sxm": "h100_sxm", "h200": "h200_sxm", "l40s": "l40s", "b200": "b200_sxm",
               "b300": "b300_sxm", "l4": "l4", "h100-pcie": "h100_pcie", "a100-80gb-pcie": "a100_pcie",
               "rtx-pro-6000-server": "rtx_pro_6000_server", "rtx-4090": None, "a100-40gb-sxm": None}


def test_bundled_gpus_agree_with_aiconfigurator_system_files():
    # NVIDIA's aiconfigurator-core system files: a second source for most entries (for
    # rtx-pro-6000-server and b300 the source itself, so this catches copying mistakes). Peaks
    # and bandwidths agree within 5 % (B200: DGX datasheet 8 TB/s against the file's 7.7); memory
    # within 10 % (the files give GiB or what nvidia-smi reports; servesim keeps the datasheet's
    # GB); host PCIe too, but for B200 (DGX datasheet: Gen5; the file: Gen6).
    assert {name: gpu.aiconfigurator_system for name, gpu in GPUS.items() if name in AIC_SYSTEMS} == AIC_SYSTEMS
    spec = importlib.util.find_spec("aiconfigurator_core")
    if spec is None or spec.origin is None:
        pytest.skip("aiconfigurator-core is not installed")
    systems = Path(spec.origin).parent / "systems"
    for name, gpu in GPUS.items():
        if gpu.aiconfigurator_system is None:
            continue
        system = yaml.safe_load((systems / f"{gpu.aiconfigurator_system}.yaml").read_text())
        chip, node = system["gpu"], system["node"]
        assert gpu.bf16_flops == pytest.approx(chip["bfloat16_tc_flops"], rel=0.05), name
        assert gpu.int8_ops == pytest.approx(chip["int8_tc_flops"], rel=0.05), name
        assert gpu.memory_bandwidth == pytest.approx(chip["mem_bw"], rel=0.05), name
        assert gpu.memory_bytes == pytest.approx(chip["mem_capacity"], rel=0.10), name
        assert gpu.pcie_bandwidth == pytest.approx(node["pcie_bw"], rel=0.05) or name == "b200", name
        if gpu.link_kind == "nvlink":
            assert gpu.link_bandwidth == pytest.approx(node["intra_node_bw"], rel=0.05), name
        assert (gpu.fp8_flops is None) == ("fp8_tc_flops" not in chip), name


def test_llama3_8b_fits_on_one_l4():
    # 24 GB x 0.9 = 20.1 GiB usable; 15.0 GiB of weights and 2.6 GiB of activations leave about
    # 2.5 GiB for KV cache, at 2 MiB per 16-token block (32 layers x 8 KV heads x 128 x 2 x 2 bytes
    # x 16): about 1,300 blocks, 20k tokens, enough for its 8,192-token context.
    d = resolve_deployment(load_scenario(None, ["hardware.gpu=l4"]))
    assert 1_150 < d.num_kv_blocks < 1_450
    assert d.num_kv_blocks * 16 >= 8192


def test_llama3_70b_fits_on_one_b300_not_on_one_h200():
    # 70.6 B parameters x 2 bytes = 141 GB of weights: within 288 GB x 0.9, beyond 141 GB x 0.9.
    on_b300 = resolve_deployment(load_scenario(None, ["hardware.gpu=b300", "model=llama-3-70b"]))
    assert on_b300.num_kv_blocks > 0 and on_b300.weight_bytes_per_gpu > 130e9
    with pytest.raises(ScenarioError, match="GiB of weights"):
        resolve_deployment(load_scenario(None, ["hardware.gpu=h200", "model=llama-3-70b"]))
