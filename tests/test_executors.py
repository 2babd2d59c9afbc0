"""Executors: parallel maps give the serial loop's results; failures come back with their index."""

from __future__ import annotations

import math

import pytest

from simulator.errors import ScenarioError
from simulator.studies.executors import LocalExecutor, TaskError, make_executor

ITEMS = list(range(12))


def cube_plus_one(x: int) -> int:
    return x**3 + 1


def fail_on_five(x: int) -> int:
    if x == 5:
        raise ValueError("five is not allowed")
    return x


def scenario_error_on_three(x: int) -> int:
    if x == 3:
        raise ScenarioError("sweep.yaml", "axes.scheduler.name", "nope", "unknown scheduler", "use one of vllm, sarathi")
    return x


class UnpicklableError(Exception):
    """Keeps only its message in ``args``, so unpickling it calls __init__ with too few arguments."""

    def __init__(self, a: int, b: int) -> None:
        super().__init__(f"{a}/{b}")


def unpicklable_failure(x: int) -> int:
    raise UnpicklableError(x, 2)


@pytest.mark.parametrize("workers", [1, 2])
def test_local_map_matches_a_serial_loop(workers):
    serial = [cube_plus_one(x) for x in ITEMS]
    pairs = list(LocalExecutor(workers, progress=False).map(cube_plus_one, ITEMS, desc="cubes"))
    # Every index exactly once; results in input order once sorted by index.
    assert sorted(i for i, _ in pairs) == list(range(len(ITEMS)))
    assert [r for _, r in sorted(pairs)] == serial


def test_make_executor_local_defaults_to_every_cpu():
    import os

    executor = make_executor("local", progress=False)
    assert isinstance(executor, LocalExecutor) and executor.max_workers == (os.cpu_count() or 1)


@pytest.mark.parametrize("workers", [1, 2])
def test_exception_is_reraised_with_the_item_index(workers):
    with pytest.raises(ValueError, match="five is not allowed") as info:
        list(LocalExecutor(workers, progress=False).map(fail_on_five, ITEMS))
    assert info.value.task_index == 5


@pytest.mark.parametrize("workers", [1, 2])
def test_scenario_error_from_a_worker_keeps_its_fields(workers):
    # The command line prints a ScenarioError as one line; it must survive the trip intact.
    with pytest.raises(ScenarioError) as info:
        list(LocalExecutor(workers, progress=False).map(scenario_error_on_three, ITEMS))
    error = info.value
    assert (error.source, error.field, error.value, error.task_index) == ("sweep.yaml", "axes.scheduler.name", "nope", 3)
    assert str(error).startswith("sweep.yaml: axes.scheduler.name = 'nope': unknown scheduler")


def test_an_exception_that_cannot_be_pickled_arrives_as_task_error():
    with pytest.raises(TaskError, match="UnpicklableError") as info:
        list(LocalExecutor(2, progress=False).map(unpicklable_failure, [7, 8]))
    assert info.value.task_index in (0, 1) and "unpicklable_failure" in info.value.remote_traceback


def test_bad_executor_options_are_scenario_errors():
    with pytest.raises(ScenarioError, match="unknown executor"):
        make_executor("slurm")  # type: ignore[arg-type]
    with pytest.raises(ScenarioError, match="--workers"):
        make_executor("local", max_workers=0)


def test_ray_map_matches_local():
    ray = pytest.importorskip("ray", reason="ray is not installed (pip install -e '.[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        items = list(range(1, 9))
        # math functions pickle by reference, so Ray's fresh worker processes can import them.
        ray_pairs = list(make_executor("ray", progress=False).map(math.factorial, items))
        local_pairs = list(make_executor("local", max_workers=2, progress=False).map(math.factorial, items))
        assert sorted(ray_pairs) == sorted(local_pairs) == list(enumerate(math.factorial(x) for x in items))
        with pytest.raises(ValueError, match="math domain error") as info:
            list(make_executor("ray", max_workers=2, progress=False).map(math.sqrt, [4.0, -1.0, 9.0]))
        assert info.value.task_index == 1
    finally:
        ray.shutdown()
