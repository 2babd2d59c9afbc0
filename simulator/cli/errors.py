"""How the ``servesim`` command line reports mistakes and warnings: one line each.

A mistake is ``servesim: error: ...`` on stderr and exit code 2: a ``ScenarioError`` (``fail``),
one of click's usage errors (``ServesimGroup``), or a results folder that cannot be written
(``check_out``, before any work; ``os_error`` for a write that fails later). A warning is
``servesim: warning: ...`` and the command goes on (``simulator.scenario_warnings``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import NoReturn

import click

from simulator.errors import ScenarioError


def fail(error: ScenarioError) -> NoReturn:
    """Print ``error`` as one line and exit with code 2."""
    click.echo(f"servesim: error: {error}", err=True)
    sys.exit(2)


def warn(message: str) -> None:
    """One warning line on stderr; the command goes on."""
    click.echo(f"servesim: warning: {message}", err=True)


class ServesimGroup(click.Group):
    """The ``servesim`` group: click's own usage errors (an unknown option, a missing argument, a
    bad choice) print one line too, ``servesim: error: servesim CMD: MESSAGE; see ... --help``."""

    def main(self, args=None, *rest, standalone_mode: bool = True, **kwargs):  # type: ignore[override]
        if not standalone_mode:
            return super().main(args, *rest, standalone_mode=False, **kwargs)
        try:
            code = super().main(args, *rest, standalone_mode=False, **kwargs)
        except click.UsageError as e:
            names, ctx = [], e.ctx
            while ctx is not None and ctx.parent is not None:
                names.append(ctx.info_name)
                ctx = ctx.parent
            if e.ctx is None:  # an option parsed before click made the command's context
                names = [next((a for a in (sys.argv[1:] if args is None else args) if a in self.commands), "")][:1]
            command = " ".join(["servesim", *reversed([n for n in names if n])])
            click.echo(f"servesim: error: {command}: {e.format_message().rstrip('.')}; see `{command} --help`", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            click.echo(f"servesim: error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("servesim: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def check_out(out: Path, source: str, field: str = "") -> None:
    """Fail unless ``out`` is a folder this process can write into, or can create; creates nothing.

    Checked before a command does its work, so a long run never ends on an unwritable folder.
    """
    if out.exists():
        if not out.is_dir():
            problem = "is a file, not a folder"
        elif not os.access(out, os.W_OK | os.X_OK):
            problem = "is a folder this user cannot write into"
        else:
            return
    else:
        above = next((p for p in out.absolute().parents if p.exists()), None)
        if above is not None and not above.is_dir():
            problem = f"cannot be created: {above} is a file"
        elif above is not None and not os.access(above, os.W_OK | os.X_OK):
            problem = f"cannot be created: {above} is not writable"
        else:
            return
    fail(ScenarioError(source, field, str(out), problem, "choose a folder you can write"))


def os_error(e: OSError, option: str = "--out") -> ScenarioError:
    """A results file that could not be written (disk full, permissions changed mid-run) as one line."""
    return ScenarioError(str(e.filename or option), "", ..., f"cannot write it ({e.strerror or type(e).__name__})", f"free space or choose another {option} folder")
