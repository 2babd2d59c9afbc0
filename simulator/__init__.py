"""servesim: a discrete-event LLM serving simulator calibrated by GPU kernel profiles."""

__version__ = "0.1.0"
