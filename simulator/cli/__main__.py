"""``python -m simulator.cli``: the ``servesim`` command."""

from simulator.cli import main

main(prog_name="servesim")
