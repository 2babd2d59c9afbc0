"""The same plan gives the same answer on local processes and on a (local) Ray instance."""

import pandas as pd
import pytest

from simulator.studies.executors import make_executor
from simulator.studies.plan import load_plan, run_plan
from tests.conftest import REPO

ray = pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[ray]')")

TINY = REPO / "tests" / "data" / "plan-tiny.yaml"


@pytest.fixture
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def test_plan_is_the_same_on_local_processes_and_ray(local_ray):
    plan = load_plan(TINY)
    local = run_plan(plan, make_executor("local", max_workers=2, progress=False), cache_dir=None, winner_run=False)
    on_ray = run_plan(plan, make_executor("ray", progress=False), cache_dir=None, winner_run=False)
    assert local.winner is not None
    assert on_ray.winner["deployment"] == local.winner["deployment"]
    pd.testing.assert_frame_equal(on_ray.table, local.table)
    pd.testing.assert_frame_equal(on_ray.sensitivity, local.sensitivity)
