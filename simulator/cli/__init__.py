"""The ``servesim`` command line.

Every user mistake prints one line to stderr, ``servesim: error: ...``, and exits with code 2, no
traceback: a ``ScenarioError`` (the file, the field, the value and the fix), a usage error
(click's message on one line, with the command's ``--help``), or a results folder that cannot
be written (checked before any simulation runs). Warnings are one ``servesim: warning: ...``
line each and the command goes on (``simulator.scenario_warnings`` says which is which).
"""

from __future__ import annotations

import click

from simulator.cli.errors import ServesimGroup
from simulator.cli.profiling import fit_command, profile_command
from simulator.cli.run import check, list_specs, run, schema_command, summary_table, write_results
from simulator.cli.studies import compare, plan_command, validate_command


@click.group(cls=ServesimGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="servesim")
def main() -> None:
    """servesim: simulate LLM serving deployments on real request traces."""


for _command in (run, list_specs, schema_command, check, plan_command, compare, profile_command, validate_command, fit_command):
    main.add_command(_command)

__all__ = ["main", "summary_table", "write_results"]
