"""servesim's profiler: measure a model's operators on a GPU (or the CPU) and fit runtime models.

    servesim profile --model llama-3-8b --tp 1,2 --device cuda --out profiles/h100-llama3-8b
    servesim fit profiles/h100-llama3-8b

``catalogue`` lists the operators of one iteration and their shapes, ``sweeps`` the shapes to
measure, ``timer`` times one callable, ``ops`` (PyTorch) and ``triton_ops`` (the project's
kernels) build the callables, ``collectives`` measures the TP all-reduce, ``run`` drives a
resumable profile into a bundle (``bundle``, ``device``), ``fit`` fits one regressor per
operator and writes the runtime model the simulator loads, ``model`` runs real steps of a Llama
layer stack to validate the result. Importing this package imports neither torch nor triton:
only ``ops``, ``triton_ops``, ``collectives`` and ``model`` do, and they are imported inside
the functions that measure.
"""

from pathlib import Path

TINY_MODEL_CONFIG = Path(__file__).parent / "data" / "tiny-llama.json"
TINY_MOE_MODEL_CONFIG = Path(__file__).parent / "data" / "tiny-mixtral.json"
