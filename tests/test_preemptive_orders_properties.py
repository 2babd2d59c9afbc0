"""The property-based invariants (tests/test_properties.py) for fastserve and sjf with preemption
by swap, which that suite draws only for the schedulers the deployment lists as swapping."""

import tempfile
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.scenario import Scenario
from simulator.specs.model import bundled_model_spec
from tests.conftest import check_invariants
from tests.test_conformance import check_preemptions_counted
from tests.test_properties import PROPERTY_SETTINGS, _run, _scenario, scenarios


@pytest.mark.parametrize("scheduler", ["fastserve", "sjf"])
@PROPERTY_SETTINGS
@given(data=st.data())
def test_invariants_hold_with_preemption_by_swap(scheduler, data):
    config, rows = data.draw(scenarios(scheduler))
    # Swap space for 1, 3 or 1,000 KV blocks of the default model (TP 1): from one victim's worth to plenty.
    block_bytes = bundled_model_spec(Scenario().model.name).kv_bytes_per_token(2) * config["scheduler"]["block_size"]
    num_swap_blocks = data.draw(st.sampled_from([1, 3, 1000]))
    config["scheduler"] |= {"preemption_mode": "swap", "swap_space_gib": (num_swap_blocks + 0.5) * block_bytes / 2**30}
    with tempfile.TemporaryDirectory() as folder:
        scenario = _scenario(config, rows, Path(folder))
        sim, result = _run(scenario)
        check_invariants(sim, result)
        check_preemptions_counted(result)
        for r in sim.workload.requests:
            assert list(r.token_times) == sorted(r.token_times) and r.token_times[0] >= r.arrival_time
        _, again = _run(scenario)
        pd.testing.assert_frame_equal(result.requests, again.requests)
        pd.testing.assert_frame_equal(result.iterations, again.iterations)
