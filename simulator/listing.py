"""What ``servesim list`` shows: the bundled models, GPUs, schedulers, routers and named profiles.

Each is a ``simulator.reports.tables.TableData`` of raw values (parameter counts, FLOP/s in TFLOPS as
the datasheets give them), so the same rows print as a table, JSON or CSV.
"""

from __future__ import annotations

from simulator.errors import ScenarioError
from simulator.reports.tables import Column, TableData

KINDS = ("models", "gpus", "schedulers", "routers", "profiles")


def _g(value: float) -> str:
    return f"{value:g}"


def models_table() -> TableData:
    """Bundled models: layers, hidden size, heads, parameters (total and active, billions), context."""
    from simulator.specs.model import bundled_model_names, bundled_model_spec

    columns = [Column("name"), Column("layers", "num_layers", "right"), Column("hidden", "hidden_size", "right"),
               Column("heads", "num_attention_heads", "right"), Column("KV heads", "num_kv_heads", "right"),
               Column("params (B)", "params_b", "right", lambda v: f"{v:.2f}"), Column("active (B)", "active_params_b", "right", lambda v: f"{v:.2f}"),
               Column("max context", "max_position_embeddings", "right", lambda v: f"{v:,}")]
    rows = []
    for name in bundled_model_names():
        m = bundled_model_spec(name)
        rows.append([name, m.num_layers, m.hidden_size, m.num_attention_heads, m.num_kv_heads, m.num_params / 1e9, m.num_active_params / 1e9, m.max_position_embeddings])
    return TableData("models", "models", columns, rows)


def gpus_table() -> TableData:
    """Bundled GPUs: dense peaks (datasheets, ``simulator.specs.gpu``), memory, bandwidth, link."""
    from simulator.specs.gpu import GPUS

    columns = [Column("name"), Column("BF16 TFLOPS", "bf16_tflops", "right", _g), Column("FP8 TFLOPS", "fp8_tflops", "right", _g),
               Column("INT8 TOPS", "int8_tops", "right", _g), Column("memory GB", "memory_gb", "right", _g),
               Column("HBM TB/s", "memory_tb_per_s", "right", _g), Column("link", "link_kind"), Column("link GB/s/dir", "link_gb_per_s", "right", _g)]
    rows = [[g.name, g.bf16_flops / 1e12, None if g.fp8_flops is None else g.fp8_flops / 1e12, g.int8_ops / 1e12, g.memory_bytes / 1e9,
             g.memory_bandwidth / 1e12, g.link_kind, g.link_bandwidth / 1e9] for g in GPUS.values()]
    return TableData("gpus", "GPUs (dense peaks)", columns, rows, "hardware.gpu also takes a GPU spec .yaml file (example: scenarios/gpus/example-gpu.yaml)")


def schedulers_table() -> TableData:
    """Scheduler names (``scheduler.name``) and the first line of each policy's docstring."""
    from simulator.schedulers import SCHEDULERS

    rows = [[name, ((cls.__doc__ or "").strip().splitlines() or [""])[0].replace("``", "")] for name, cls in SCHEDULERS.items()]
    return TableData("schedulers", "schedulers (scheduler.name)", [Column("name"), Column("policy")], rows)


def routers_table() -> TableData:
    """Router names (``cluster.router``)."""
    from simulator.engine.router import ROUTERS

    rows = [[name, ((getattr(fn, "__doc__", None) or "").strip().splitlines() or [""])[0]] for name, fn in ROUTERS.items()]
    return TableData("routers", "routers (cluster.router)", [Column("name"), Column("policy")], rows)


def profiles_table() -> tuple[TableData, str]:
    """aiconfigurator-core's (system, framework, version) tables a named profile can use, and a note.

    Empty when the package is not installed (the note says how to install it).
    """
    columns = [Column("system"), Column("framework"), Column("versions")]
    try:
        from profiler.imports.aiconfigurator import EXTRA, available
    except ImportError:
        return TableData("profiles", "profiles by name (hardware.profile)", columns), "profiles by name: llmservingsim:FOLDER; vidur:FOLDER"
    try:
        have = available()
    except ScenarioError:
        note = f"profiles by name: aiconfigurator:SYSTEM/FRAMEWORK/VERSION needs aiconfigurator-core ({EXTRA}); llmservingsim:FOLDER; vidur:FOLDER"
        return TableData("profiles", "profiles by name (hardware.profile)", columns), note
    rows = [[system, framework, ", ".join(versions)] for system, frameworks in have.items() for framework, versions in frameworks.items()]
    note = "e.g. hardware.profile: aiconfigurator:h100_sxm/vllm/0.24.0; also llmservingsim:FOLDER and vidur:FOLDER (servesim profile import)"
    return TableData("profiles", "profiles by name (hardware.profile), from aiconfigurator-core", columns, rows), note


def list_tables(kind: str | None = None) -> tuple[list[TableData], list[str]]:
    """The tables of ``servesim list`` (all, or the one ``kind`` of ``KINDS``) and notes to print after them."""
    assert kind is None or kind in KINDS, kind
    makers = {"models": models_table, "gpus": gpus_table, "schedulers": schedulers_table, "routers": routers_table}
    tables, notes = [], []
    for name in KINDS if kind is None else (kind,):
        if name == "profiles":
            table, note = profiles_table()
            tables.append(table)
            notes.append(note)
        else:
            tables.append(makers[name]())
    return tables, notes
