"""User-facing errors: one line naming the file, the field, the value and the fix.

A user's mistake (bad YAML, an unknown key, an impossible deployment, a bad trace row) raises
``ScenarioError``; the command line prints its message on one line and exits with code 2.
Invariant violations inside the simulator stay ``AssertionError``s: they are bugs, not input.
"""

from __future__ import annotations

from typing import Any


class ScenarioError(Exception):
    """A problem in the user's input, reported as ``FILE: FIELD = VALUE: PROBLEM; FIX``.

    Args:
        source: the file the value came from (scenario, trace, config.json) or ``"--set"``.
        field: dotted path of the field (``cluster.tensor_parallel_size``), a trace row
            (``row 12``), or ``""`` when the whole file is at fault.
        value: the offending value, printed with ``repr`` (omitted when ``...``).
        problem: what is wrong, in a few words.
        fix: what the user should do about it.
    """

    def __init__(self, source: str, field: str, value: Any, problem: str, fix: str) -> None:
        self.source, self.field, self.value, self.problem, self.fix = source, field, value, problem, fix
        where = source
        if field:
            where += f": {field}"
        if value is not ...:
            shown = repr(value)
            if len(shown) > 80:  # keep both ends: a path's file name is at its end
                shown = shown[:38] + "..." + shown[-39:]
            where += f" = {shown}"
        super().__init__(f"{where}: {problem}; {fix}")

    def __reduce__(self):
        # Rebuild from the five fields, so an error raised in a worker process reaches the
        # command line intact (the default pickling passes only the message).
        return type(self), (self.source, self.field, self.value, self.problem, self.fix)
