"""The block manager's accounting."""

import pytest

from simulator.engine.kv_cache import BlockManager
from tests.conftest import make_request


def test_blocks_round_up_to_block_size():
    bm = BlockManager(num_blocks=10, block_size=16)
    assert [bm.num_blocks_for(n) for n in (1, 16, 17, 32, 33)] == [1, 1, 2, 2, 3]


def test_allocate_grow_free_conserve_blocks():
    bm = BlockManager(num_blocks=10, block_size=16, watermark=0.0)
    a, b = make_request(0), make_request(1)
    bm.allocate(a, 17)  # 2 blocks
    bm.allocate(b, 16)  # 1 block
    assert (bm.num_used_blocks, bm.num_free_blocks) == (3, 7)
    assert bm.grow_to(b, 16) and bm.num_blocks_held(b) == 1  # room in its block
    assert bm.grow_to(b, 17)  # crossing the boundary takes one more block
    assert bm.num_blocks_held(b) == 2 and bm.num_free_blocks == 6
    bm.free(a)
    bm.free(b)
    assert bm.num_free_blocks == bm.num_blocks == 10


def test_watermark_holds_back_admission():
    bm = BlockManager(num_blocks=100, block_size=1, watermark=0.1)  # keep 10 blocks free
    assert bm.can_allocate(90)
    assert not bm.can_allocate(91)


def test_double_allocation_is_a_bug_and_overdraw_refused():
    bm = BlockManager(num_blocks=2, block_size=4, watermark=0.0)
    r = make_request(0)
    bm.allocate(r, 4)
    with pytest.raises(AssertionError):
        bm.allocate(r, 4)
    assert not bm.grow_to(r, 13)  # needs 2 more blocks, 1 free: refused, nothing changes
    assert bm.num_blocks_held(r) == 1 and bm.num_free_blocks == 1
