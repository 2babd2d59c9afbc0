"""Calibrate the roofline per GPU on aiconfigurator-core's vLLM kernel tables; write the calibration file.

What it does, for every bundled GPU (``simulator.specs.gpu.GPUS``) whose aiconfigurator system
has vLLM tables (``calibrate_roofline_tables.py`` reads and filters them):

1. fits ``gemm_flops_efficiency``, ``gemm_bandwidth_efficiency`` and the per-kernel floor
   ``kernel_launch_s`` to the GEMM table, and ``attention_flops_efficiency``,
   ``attention_bandwidth_efficiency`` and the attention floor ``attention_launch_s`` to the
   prefill and decode attention tables, in the model's own form ``max(FLOPs / (peak e_f),
   bytes / (bandwidth e_b)) + floor``, minimizing the weighted mean |log(pred / measured)| by
   coordinate descent over grids (``calibrate_roofline.py``'s). Log error: a kernel at 5 us and
   one at 5 ms count alike. Each octave of size weighs the same within a sweep (tokens of a
   GEMM within one (n, k); new tokens of a prefill step and context tokens of a decode step
   within one head shape): the tables' sweeps crowd large sizes, and decode-sized shapes would
   hardly count otherwise. Prefill and decode weigh half each in the attention fit. The two
   floors differ by physics: the smallest GEMM takes 1.5-2.5 us, the smallest attention call
   7-11 us (planning the split over the KV cache, the kernel, the combine of the splits), and
   one shared floor would price every norm, rotary and activation kernel at the attention's;
2. reports per GPU and operator class the median and P90 |pred / measured - 1| of the
   roofline before (the H100 defaults, ``calibration.FALLBACK``, which servesim applied to
   every GPU) and after, on the fitted vLLM tables, held out on the same GPU's SGLang tables
   (another framework's measurements of the same kernel classes), and for H100 and A100 on
   Vidur's GEMM profiles (fp16 cuBLAS, kineto kernel times: another machine and method);
3. fits the all-reduce per GPU and TP degree (``calibrate_roofline_allreduce.py``) and reports
   its error against the tables and, for H100 and A100, against Vidur's NCCL measurements;
4. writes ``simulator/specs/roofline_calibration.json``: fitted parameters with provenance, no
   table rows.

Assumptions (each labelled in the file):
- elementwise_bandwidth_efficiency has no aiconfigurator table. H100 and A100 keep their fit to
  Vidur's norm, rotary and activation kernels (``calibrate_roofline.py``); another GPU gets the
  H100 value times its fitted GEMM bandwidth efficiency over H100's: a memory-bound GEMM streams
  its weights from HBM once, as an elementwise kernel streams its operands. (Decode attention,
  the other memory-bound table, gathers paged KV blocks and carries its kernel's maturity: vLLM
  0.14's A100 decode reaches 0.44 of HBM where H100's reaches 0.78.) The script prints the
  rule's prediction for A100 beside A100's own Vidur fit.
- link_bandwidth_efficiency (pipeline sends, the logits gather, and the ring formula for TP
  degrees without tables) keeps the Vidur fit for H100 and A100; another GPU gets the H100 value
  times its ring-formula efficiency over H100's, both fitted by the same estimator
  (``ring_joint_fits``: p = 2, 4, 8, all sizes) to the aiconfigurator NCCL tables, so the
  ratio compares like with like. The script prints this rule's A100 prediction too.
- the GEMM floor serves every non-attention kernel (norms, rotary, activation, KV-cache write);
  the tables are CUDA graph replays, so it is kernel time plus the launch gap inside a graph.
- GPUs without tables of their own take another GPU's fit (``PROXY_OF_GPU``), labelled proxy;
  a proxy whose link kind differs keeps the H100 link default, and proxies keep the ring formula.
- vLLM before 0.16 (A100's 0.14 tables) writes the KV cache inside the attention forward the
  tables time; servesim prices that write apart, so A100's attention fit absorbs one small
  kernel per call.

How to run (about two minutes on 2 cores):
    python benchmarks/calibrate_roofline_gpus.py [--profiles PATH] [--out PATH | --no-write]
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from calibrate_roofline import (EFF_GRID, FLOOR_GRID, REPO, _abs_log_err, add_roofline_terms, coordinate_descent, fit,
                                octave_weights, pct, read_all_reduce, read_compute, ring_joint_fits)
from calibrate_roofline_allreduce import CUSTOM_MAX_BYTES, fit_all_reduce, ring_efficiency, vllm_measured
from calibrate_roofline_allreduce import read_all_reduce as read_tables_all_reduce
from calibrate_roofline_tables import (PACKAGE, PACKAGE_VERSION, PROXY_OF_GPU, SYSTEM_OF_GPU, attention_model, add_terms, has_tables,
                                       read_attention, read_gemm, system_yaml)
from rich.console import Console
from rich.table import Table as RichTable

from simulator.cost_models.roofline import RooflineCostModel
from simulator.scenario import RooflineConfig
from simulator.specs.calibration import CALIBRATION_FILE, FALLBACK, ROOFLINE_FIELDS
from simulator.specs.gpu import GPUS, GPUSpec

SCRIPT = "benchmarks/calibrate_roofline_gpus.py"
PARAMS = {"e_f": "gemm_flops_efficiency", "e_b": "gemm_bandwidth_efficiency", "e_af": "attention_flops_efficiency",
          "e_ab": "attention_bandwidth_efficiency", "c": "kernel_launch_s", "c_a": "attention_launch_s"}
BEFORE = {k: FALLBACK[f] for k, f in PARAMS.items()}
VIDUR_LABEL = {"h100-sxm": "H100", "a100-80gb-sxm": "A100"}  # GPUs of calibrate_roofline.py
ATTENTION_FLOOR_GRID = np.arange(0.0, 40.01e-6, 0.1e-6)
CLASSES = ("GEMM compute-bound", "GEMM memory-bound", "prefill attention", "decode attention")


@dataclass(frozen=True)
class Target:
    """One servesim GPU to calibrate: the system whose tables fit it, and whether it is a proxy."""

    gpu: GPUSpec
    system: str
    proxy: bool
    link_kind: str


def _link_kind(gpu: GPUSpec, system: str) -> str:
    kind = getattr(gpu, "link_kind", None)
    if kind is None:  # GPU specs before link_kind: NVLink where the system's node link beats PCIe
        node = system_yaml(system)["node"]
        kind = "nvlink" if node["intra_node_bw"] > node["pcie_bw"] else "pcie"
    return kind


def targets() -> tuple[list[Target], list[str]]:
    """The GPUs with tables (measured first, then proxies), and notes on those left out."""
    found, notes = [], []
    for name, gpu in GPUS.items():
        system = getattr(gpu, "aiconfigurator_system", None) or SYSTEM_OF_GPU.get(name)
        if system is not None and has_tables(system):
            found.append(Target(gpu, system, False, _link_kind(gpu, system)))
        elif name in PROXY_OF_GPU:
            found.append(Target(gpu, PROXY_OF_GPU[name], True, _link_kind(gpu, PROXY_OF_GPU[name])))
        else:
            notes.append(f"{name}: no aiconfigurator tables{f' ({system} is empty)' if system else ''} and no proxy: keeps the H100 defaults")
    return sorted(found, key=lambda t: t.proxy), notes


# -- the roofline fit ----------------------------------------------------------------------------
def predict(rows: pd.DataFrame, p: dict[str, float]) -> np.ndarray:
    """The roofline's price of each row: GEMM rows with (e_f, e_b, c), attention rows with (e_af, e_ab, c_a)."""
    tf, tb = rows.t_flops.to_numpy(), rows.t_bytes.to_numpy()
    gemm = np.maximum(tf / p["e_f"], tb / p["e_b"]) + p["c"]
    attention = np.maximum(tf / p["e_af"], tb / p["e_ab"]) + p["c_a"]
    return np.where(rows.cls.to_numpy() == "gemm", gemm, attention)


def fit_roofline(rows: pd.DataFrame) -> dict[str, float]:
    """The six parameters minimizing the weighted mean |log error| (weights: module docstring).

    GEMM and attention share no parameter, so one loss over both is two independent fits.
    """
    y, tf, tb = rows.measured_s.to_numpy(), rows.t_flops.to_numpy(), rows.t_bytes.to_numpy()
    is_gemm = rows.cls.to_numpy() == "gemm"
    w = octave_weights(rows, ["op", "shape"], size_col="size")
    for op in rows.op.unique():  # GEMM 1; prefill and decode attention 1/2 each
        sel = (rows.op == op).to_numpy()
        w[sel] /= w[sel].sum() * (1 if op == "gemm" else 2)

    def loss(e_f, e_b, c, e_af, e_ab, c_a):
        pred = np.where(is_gemm, np.maximum(tf / e_f, tb / e_b) + c, np.maximum(tf / e_af, tb / e_ab) + c_a)
        return (_abs_log_err(pred, y) * w).sum(axis=-1)

    p = coordinate_descent(loss, {"e_f": 0.7, "e_b": 0.8, "c": 3e-6, "e_af": 0.5, "e_ab": 0.8, "c_a": 8e-6},
                           {"e_f": EFF_GRID, "e_b": EFF_GRID, "c": FLOOR_GRID, "e_af": EFF_GRID, "e_ab": EFF_GRID,
                            "c_a": ATTENTION_FLOOR_GRID})
    return {k: round(v, 8) if k.startswith("c") else round(v, 3) for k, v in p.items()}


def classes(rows: pd.DataFrame, p: dict[str, float]) -> np.ndarray:
    """Operator class of each row; a GEMM's regime is the term that dominates under ``p``."""
    compute = rows.t_flops.to_numpy() / p["e_f"] >= rows.t_bytes.to_numpy() / p["e_b"]
    gemm = np.where(compute, CLASSES[0], CLASSES[1])
    return np.where(rows.cls == "gemm", gemm, rows.op.to_numpy())


def errors(rows: pd.DataFrame, after: dict[str, float]) -> dict[str, dict[str, float]]:
    """Per class: rows, and median and P90 |pred / measured - 1| (%) before and after calibration."""
    out = {}
    klass = classes(rows, after)
    y = rows.measured_s.to_numpy()
    rel = {name: np.abs(predict(rows, p) / y - 1) * 100 for name, p in (("before", BEFORE), ("after", after))}
    for c in CLASSES:
        sel = klass == c
        if sel.any():
            out[c] = {"rows": int(sel.sum()), **{f"{n}_{q}": round(pct(r[sel], q), 1) for n, r in rel.items() for q in (50, 90)}}
    return out


# -- the whole run -------------------------------------------------------------------------------
def vidur_reference(profiles: Path) -> dict:
    """Vidur's H100/A100 fits (elementwise, ring link efficiency), GEMM rows and NCCL rows."""
    compute = add_roofline_terms(read_compute(profiles))
    ar = read_all_reduce(profiles)
    links = ring_joint_fits(ar)
    out = {}
    for gpu_name, label in VIDUR_LABEL.items():
        gemm = compute[(compute.gpu_label == label) & (compute.cls == "gemm")]
        out[gpu_name] = {
            "e_el": fit(compute[compute.gpu_label == label])["e_el"], "link": links[gpu_name][0],
            "gemm": gemm.assign(size=gemm.m), "nccl": ar[(ar.gpu == gpu_name) & ar.matches_spec],
        }
    return out


def calibrate_system(target: Target) -> dict:
    """Fit one measured GPU: parameters, errors (vLLM, SGLang) and all-reduce, with provenance."""
    gpu, system = target.gpu, target.system
    gemm, gemm_table = read_gemm(system, "vllm")
    attention, attention_tables = read_attention(system, "vllm", gemm_table.version)
    rows = add_terms(pd.concat([gemm, attention], ignore_index=True), gpu)
    p = fit_roofline(rows)
    result = {"p": p, "errors": {"vllm (fit)": errors(rows, p)}, "kernels": sorted(attention.kernel.unique()),
              "tables": [gemm_table, *attention_tables], "framework_version": gemm_table.version,
              "device": str(pd.read_parquet(gemm_table.path, columns=["device"]).device.iloc[0])}
    sg = read_gemm(system, "sglang")
    sg_attention, sg_tables = read_attention(system, "sglang")
    if sg is not None:
        sg_rows = add_terms(pd.concat([sg[0], sg_attention], ignore_index=True), gpu)
        result["errors"][f"sglang {sg[1].version} (held out)"] = errors(sg_rows, p)
    ar_rows, ar_tables = read_tables_all_reduce(system, gemm_table.version)
    result["ar_rows"], result["ar_tables"] = ar_rows, ar_tables
    result["all_reduce"] = fit_all_reduce(ar_rows, target.link_kind)
    result["ring_efficiency"] = ring_efficiency(ar_rows, gpu.name) if result["all_reduce"] is not None else None
    return result


def entry(target: Target, fitted: dict, vidur: dict, h100: dict) -> dict:
    """The calibration file's entry of one GPU (measured or proxy)."""
    name, p = target.gpu.name, fitted["p"]
    measured = fitted["gpu"]
    vllm = f"vLLM {fitted['framework_version']}"
    kernels = ", ".join(fitted["kernels"])
    values = {PARAMS[k]: v for k, v in p.items()}
    sources = {
        "gemm_flops_efficiency": f"fitted: {vllm} gemm_perf (bf16; n, k 512..65536)",
        "gemm_bandwidth_efficiency": f"fitted: {vllm} gemm_perf (bf16; n, k 512..65536)",
        "attention_flops_efficiency": f"fitted: {vllm} context/generation_attention_perf ({kernels}; bf16 KV, head_dim 64/128)",
        "attention_bandwidth_efficiency": f"fitted: {vllm} context/generation_attention_perf ({kernels}; bf16 KV, head_dim 64/128)",
        "kernel_launch_s": f"fitted: {vllm} gemm_perf (CUDA graph replays); serves every non-attention kernel",
        "attention_launch_s": f"fitted: {vllm} context/generation_attention_perf (CUDA graph replays)",
    }
    if measured.name in vidur:
        values["elementwise_bandwidth_efficiency"] = vidur[measured.name]["e_el"]
        sources["elementwise_bandwidth_efficiency"] = f"fitted: Vidur's {VIDUR_LABEL[measured.name]} norm/rotary/activation kernels (benchmarks/calibrate_roofline.py)"
    else:
        e = min(1.0, round(vidur["h100-sxm"]["e_el"] * p["e_b"] / h100["p"]["e_b"], 3))
        values["elementwise_bandwidth_efficiency"] = e
        sources["elementwise_bandwidth_efficiency"] = (f"assumed: Vidur's H100 fit {vidur['h100-sxm']['e_el']} x this GPU's GEMM bandwidth "
                                                       f"efficiency / H100's ({p['e_b']} / {h100['p']['e_b']}); no elementwise table")
    link_kind_matches = target.link_kind == fitted["link_kind"]
    if not link_kind_matches:
        values["link_bandwidth_efficiency"] = FALLBACK["link_bandwidth_efficiency"]
        sources["link_bandwidth_efficiency"] = f"assumed: the H100 default (the measured GPU's link is {fitted['link_kind']}, this one's {target.link_kind})"
    elif measured.name in vidur:
        values["link_bandwidth_efficiency"] = vidur[measured.name]["link"]
        sources["link_bandwidth_efficiency"] = f"fitted: ring formula to Vidur's NCCL all-reduce on an {VIDUR_LABEL[measured.name]} DGX"
    else:
        own, ref = fitted["ring_efficiency"], h100["ring_efficiency"]
        values["link_bandwidth_efficiency"] = min(1.0, round(vidur["h100-sxm"]["link"] * own / ref, 3))
        sources["link_bandwidth_efficiency"] = (f"assumed: Vidur's H100 fit {vidur['h100-sxm']['link']} x this GPU's ring-formula efficiency / "
                                                f"H100's ({own:.3f} / {ref:.3f}, fitted to the aiconfigurator NCCL tables)")
    if target.proxy:
        sources = {f: f"proxy of {measured.name}: {s}" for f, s in sources.items()}
    ar = fitted["all_reduce"] if not target.proxy else None
    return {
        "provenance": {
            "package": PACKAGE, "package_version": PACKAGE_VERSION, "licence": "Apache-2.0", "system": target.system,
            "device": fitted["device"], "framework": "vllm", "framework_version": fitted["framework_version"],
            "tables": [t.rel for t in fitted["tables"]] + ([t.rel for t in fitted["ar_tables"]] if ar else []),
            "fit_date": fitted["date"], "script": SCRIPT, "proxy_of": measured.name if target.proxy else None,
        },
        "reference": {"bf16_flops": measured.bf16_flops, "memory_bandwidth": measured.memory_bandwidth, "link_bandwidth": measured.link_bandwidth},
        "roofline": {f: {"value": values[f], "source": sources[f]} for f in ROOFLINE_FIELDS},
        "all_reduce": None if ar is None else {
            "link_kind": target.link_kind, "custom_max_bytes": CUSTOM_MAX_BYTES,
            "custom": {str(tp): {"latency_s": round(f.latency_s, 8), "bandwidth": round(f.bandwidth, -6)} for tp, f in sorted(ar.custom.items())},
            "nccl": {str(tp): {"latency_s": round(f.latency_s, 8), "bandwidth": round(f.bandwidth, -6)} for tp, f in sorted(ar.nccl.items())},
        },
        "fit_error_pct": None if target.proxy else fitted["errors"],  # a proxy was never compared with its own GPU
    }


# -- reports -------------------------------------------------------------------------------------
def _table(title: str, columns: list[str]) -> RichTable:
    t = RichTable(title=title)
    for i, c in enumerate(columns):
        t.add_column(c, justify="left" if i < 3 else "right")
    return t


def error_report(console: Console, fits: dict[str, dict]) -> None:
    t = _table("Roofline |pred / measured - 1| per operator class: before (H100 defaults) and after (this GPU's fit), %",
               ["GPU", "data", "class", "rows", "before\nmedian", "before\nP90", "after\nmedian", "after\nP90"])
    for name, f in fits.items():
        for data, by_class in f["errors"].items():
            for c, e in by_class.items():
                t.add_row(name, data, c, str(e["rows"]), *(f"{e[k]:.0f}" for k in ("before_50", "before_90", "after_50", "after_90")))
        t.add_section()
    console.print(t)


def all_reduce_report(console: Console, fits: dict[str, dict], vidur: dict) -> None:
    t = _table("All-reduce: alpha-beta fits per TP degree, |pred / measured - 1| %, and the price against what vLLM runs "
               "(custom below 8 MiB where it applies, else NCCL) beside the old ring formula",
               ["GPU", "TP", "fit", "latency\nus", "bandwidth\nGB/s", "fit med", "fit P90", "price med", "price P90",
                "ring med", "ring P90", "16 KiB us\nmeas/price/ring", "1 MiB us\nmeas/price/ring"])
    for name, f in fits.items():
        fit_ar, rows = f["all_reduce"], f["ar_rows"]
        if fit_ar is None:
            continue
        meas = vllm_measured(rows, f["link_kind"])
        for tp in sorted(fit_ar.nccl):
            ring = RooflineCostModel(attention_model(8, 8, 128), f["gpu"], tp, 1, RooflineConfig(**FALLBACK))
            m = meas[meas.tp == tp]
            price = np.array([fit_ar.time(tp, n) for n in m.nbytes])
            ring_t = np.array([ring.ring_all_reduce_time(n) for n in m.nbytes])
            rel_p, rel_r = np.abs(price / m.measured_s - 1) * 100, np.abs(ring_t / m.measured_s - 1) * 100
            at = {n: (m.measured_s[m.nbytes == n].iloc[0], fit_ar.time(tp, n), ring.ring_all_reduce_time(n)) for n in (16384, 1 << 20)}
            for algo, ab in (("nccl", fit_ar.nccl[tp]), ("custom", fit_ar.custom.get(tp))):
                if ab is None:
                    continue
                d = rows[(rows.algo == algo) & (rows.tp == tp) & ((algo == "nccl") | (rows.nbytes < CUSTOM_MAX_BYTES))]
                rel = np.abs(ab.time(d.nbytes.to_numpy()) / d.measured_s - 1) * 100
                t.add_row(name, str(tp), algo, f"{ab.latency_s * 1e6:.1f}", f"{ab.bandwidth / 1e9:.0f}", f"{pct(rel, 50):.0f}",
                          f"{pct(rel, 90):.0f}", f"{pct(rel_p, 50):.0f}", f"{pct(rel_p, 90):.0f}", f"{pct(rel_r, 50):.0f}",
                          f"{pct(rel_r, 90):.0f}", *("/".join(f"{x * 1e6:.1f}" for x in at[n]) for n in at))
        t.add_section()
    console.print(t)
    t = _table("Held out: the NCCL fits against Vidur's NCCL all-reduce on DGX nodes (other machine and NCCL), %",
               ["GPU", "TP", "rows", "NCCL fit med", "NCCL fit P90", "ring med", "ring P90"])
    for name, v in vidur.items():
        if name not in fits or fits[name]["all_reduce"] is None:
            continue
        for tp, d in v["nccl"].groupby("num_workers"):
            ab = fits[name]["all_reduce"].nccl.get(int(tp))
            if ab is None:
                continue
            ring = RooflineCostModel(attention_model(8, 8, 128), fits[name]["gpu"], int(tp), 1, RooflineConfig(**FALLBACK))
            y = d.measured_s.to_numpy()
            rel = np.abs(ab.time(d["size"].to_numpy(float)) / y - 1) * 100
            rel_r = np.abs(np.array([ring.ring_all_reduce_time(n) for n in d["size"]]) / y - 1) * 100
            t.add_row(name, str(tp), str(len(d)), *(f"{pct(r, q):.0f}" for r in (rel, rel_r) for q in (50, 90)))
    console.print(t)


def values_report(console: Console, calibration: dict, notes: list[str]) -> None:
    t = _table("Calibrated roofline values (a = assumed, p = proxy)", ["GPU", "system", "vLLM", *(f.replace("_efficiency", "").replace("_", "\n") for f in ROOFLINE_FIELDS)])
    t.add_row("(H100 defaults)", "-", "-", *(f"{FALLBACK[f]:.3g}" for f in ROOFLINE_FIELDS))
    for name, e in calibration.items():
        cells = []
        for f in ROOFLINE_FIELDS:
            r = e["roofline"][f]
            mark = " p" if r["source"].startswith("proxy") else " a" if "assumed" in r["source"] else ""
            floor = f.endswith("_s")
            cells.append(f"{r['value'] * (1e6 if floor else 1):.3g}{' us' if floor else ''}{mark}")
        t.add_row(name, e["provenance"]["system"], e["provenance"]["framework_version"], *cells)
    console.print(t)
    for n in notes:
        console.print(f"[dim]{n}[/]")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profiles", type=Path, default=REPO.parent / "shared" / "reference-profiles",
                    help="folder holding vidur-microsoft/ (default: ../shared/reference-profiles from the repo root)")
    ap.add_argument("--out", type=Path, default=CALIBRATION_FILE, help=f"calibration file to write (default: {CALIBRATION_FILE.relative_to(REPO)})")
    ap.add_argument("--no-write", action="store_true", help="report only")
    args = ap.parse_args(argv)
    if not (args.profiles / "vidur-microsoft").is_dir():
        raise SystemExit(f"no vidur-microsoft/ under {args.profiles}; pass --profiles PATH")
    t0, date = time.perf_counter(), datetime.date.today().isoformat()
    console = Console(width=240)
    vidur = vidur_reference(args.profiles)
    todo, notes = targets()
    fits: dict[str, dict] = {}  # by measured GPU name
    for target in todo:
        if not target.proxy:
            fits[target.gpu.name] = {**calibrate_system(target), "gpu": target.gpu, "link_kind": target.link_kind, "date": date}
            console.print(f"[dim]fitted {target.gpu.name} ({target.system}) at {time.perf_counter() - t0:.0f} s[/]")
    for name, v in vidur.items():  # held out: Vidur's GEMMs on the fitted parameters
        if name in fits:
            fits[name]["errors"]["vidur fp16 cuBLAS (held out)"] = errors(v["gemm"], fits[name]["p"])
    by_system = {f["tables"][0].system: f for f in fits.values()}
    calibration = {t.gpu.name: entry(t, by_system[t.system], vidur, fits["h100-sxm"]) for t in todo}
    error_report(console, fits)
    all_reduce_report(console, fits, vidur)
    values_report(console, calibration, notes)
    if "a100-80gb-sxm" in fits:  # the two assumptions' rules, checked where Vidur measured the real value
        a, h = fits["a100-80gb-sxm"], fits["h100-sxm"]
        e_el = vidur["h100-sxm"]["e_el"] * a["p"]["e_b"] / h["p"]["e_b"]
        link = vidur["h100-sxm"]["link"] * a["ring_efficiency"] / h["ring_efficiency"]
        console.print(f"Assumption check on A100: elementwise rule gives {e_el:.3f} (Vidur's A100 fit {vidur['a100-80gb-sxm']['e_el']}); "
                      f"link rule gives {link:.3f} (Vidur's A100 fit {vidur['a100-80gb-sxm']['link']})")
    if not args.no_write:
        doc = {
            "about": "Per-GPU roofline calibration of servesim: fitted parameters only (no table rows). See simulator/specs/calibration.py.",
            "generated_by": SCRIPT, "fit_date": date, "package": {"name": PACKAGE, "version": PACKAGE_VERSION, "licence": "Apache-2.0"},
            "gpus": calibration,
        }
        args.out.write_text(json.dumps(doc, indent=1) + "\n")
        console.print(f"wrote {args.out}")
    console.print(f"[dim]done in {time.perf_counter() - t0:.0f} s; data: NVIDIA aiconfigurator-core {PACKAGE_VERSION} (Apache-2.0), Vidur (MIT)[/]")


if __name__ == "__main__":
    main()
