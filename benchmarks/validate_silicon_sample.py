"""servesim against aiconfigurator-core's silicon sample: measured vLLM TTFT and TPOT at fixed concurrency.

What it does:
    ``servesim validate aiconfigurator:silicon_sample`` in one script, with a summary per model and
    GPU. ``systems/silicon_sample.csv`` inside the installed aiconfigurator-core package
    (Apache-2.0) holds real serving measurements: per row an engine and version, a GPU system, a
    model and precision, TP, fixed input and output lengths, a concurrency (closed loop) and the
    measured mean TTFT and TPOT. ``simulator.studies.validate.silicon`` turns the vLLM rows of aggregated
    serving on H100 and H200 for the dense models servesim covers (Llama-3.1-8B and 70B, FP8) into
    measured runs: each a closed loop of that many clients sending requests of exactly the
    measured lengths, priced by the imported profile of the same GPU and framework
    (``aiconfigurator:<system>/vllm/0.24.0``, the only vLLM tables the package has for these GPUs;
    the rows were measured with vLLM 0.12 or an unrecorded version), with servesim's vLLM v1
    defaults (chunked prefill, 8,192 batched tokens, 256 sequences, bf16 KV cache: the sample does
    not record the KV dtype). Nothing here is fitted to the sample.

How to run:
    python benchmarks/validate_silicon_sample.py [--waves 4] [--workers 2] [--out reports/validate/silicon]

It prints the median |error| per model and GPU; the per-run table, errors.csv and validate.html
go to ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing
    sys.path.insert(0, str(REPO))

from simulator.studies.validate.engine import validate  # noqa: E402
from simulator.reports.validate_report import write_validation  # noqa: E402
from simulator.studies.validate.silicon import silicon_runs  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--waves", type=int, default=4, help="requests per client")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--out", type=Path, default=REPO / "reports" / "validate" / "silicon")
    args = parser.parse_args()
    t0 = time.perf_counter()
    runs = silicon_runs(args.waves)
    result = validate(runs, args.out / "cache", workers=args.workers)
    write_validation(result, args.out)
    err = result.errors.copy()
    group = {r.name: (r.scenario.set["model.name"], r.hardware.split(" x ")[1]) for r in runs}
    err["model"], err["gpu"] = zip(*err["run"].map(group))
    table = Table(title=f"silicon sample, vLLM on H100/H200 ({len(runs)} runs, {time.perf_counter() - t0:.0f} s): median |error| % (median signed)")
    for col in ("model", "GPU", "runs", "TTFT mean", "TPOT mean"):
        table.add_column(col)
    for (model, gpu), g in [*err.groupby(["model", "gpu"]), (("all", "all"), err)]:
        cells = []
        for metric in ("ttft_s", "tpot_s"):
            e = g[g["metric"] == metric]["error"]
            cells.append(f"{e.abs().median():.1f} ({e.median():+.1f})")
        table.add_row(model, gpu, str(g["run"].nunique()), *cells)
    Console(width=140).print(table)
    print(f"per-run errors: {args.out / 'errors.csv'}; report: {args.out / 'validate.html'}")


if __name__ == "__main__":
    main()
