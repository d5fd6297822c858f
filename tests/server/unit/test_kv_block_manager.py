from __future__ import annotations

import pytest

from llm_server.engine.kv_cache import BlockManager


def test_allocate_grows_table_by_whole_blocks() -> None:
    blocks = BlockManager(num_blocks=8, block_size=4)
    table: list[int] = []
    blocks.allocate(table, 5)
    assert len(table) == 2 and blocks.num_free_blocks == 6
    blocks.allocate(table, 8)  # still fits in two blocks
    assert len(table) == 2
    blocks.allocate(table, 9)
    assert len(table) == 3 and blocks.usage == pytest.approx(3 / 8)


def test_free_returns_blocks_and_rejects_double_free() -> None:
    blocks = BlockManager(num_blocks=4, block_size=4)
    table: list[int] = []
    blocks.allocate(table, 16)
    assert blocks.num_free_blocks == 0 and not blocks.can_allocate([], 1)
    with pytest.raises(RuntimeError):
        blocks.allocate([], 1)
    kept = list(table)
    blocks.free(table)
    assert table == [] and blocks.num_free_blocks == 4
    with pytest.raises(ValueError):
        blocks.free(kept)


def test_shared_block_is_freed_only_by_its_last_owner() -> None:
    blocks = BlockManager(num_blocks=2, block_size=4)
    first: list[int] = []
    blocks.allocate(first, 4)
    blocks.share(first[0])
    second = [first[0]]
    blocks.free(first)
    assert blocks.num_free_blocks == 1 and blocks.ref_counts[second[0]] == 1
    blocks.free(second)
    assert blocks.num_free_blocks == 2
    with pytest.raises(ValueError):
        blocks.share(second[0] if second else 0)
