"""Validation: measured runs of real serving engines held against servesim's predictions.

``run_format`` (the measured-run YAML), ``silicon`` (a public set as runs), ``engine`` (simulate
and compare), ``report`` (``validate.html`` and the CSVs). ``load_sets`` turns what the command
line names into runs.
"""

from __future__ import annotations

from pathlib import Path

from simulator.studies.validate.run_format import MeasuredRun, load_runs


def load_sets(values: list[str], waves: int = 4) -> list[MeasuredRun]:
    """Runs of every named set or path: ``aiconfigurator:silicon_sample``, ``distserve:FOLDER``
    (DistServe's OPT-13B measurements, ``simulator.studies.validate.distserve_set``), a run file, or a folder of them.

    Raises:
        ScenarioError: an unreadable path or file, an invalid run, or two runs of one name.
    """
    from simulator.errors import ScenarioError
    from simulator.studies.validate.distserve_set import PREFIX, distserve_runs
    from simulator.studies.validate.silicon import NAME, silicon_runs

    runs: list[MeasuredRun] = []
    for value in values:
        if value == NAME:
            runs += silicon_runs(waves)
        elif value.startswith(PREFIX):
            runs += distserve_runs(value)
        else:
            runs += load_runs(Path(value))
    names = [r.name for r in runs]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise ScenarioError(dup, "name", dup, "two runs share this name", "give every run its own name")
    return runs
