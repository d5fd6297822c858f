"""The KV block manager: which physical cache blocks each sequence owns, and prefix reuse.

Blocks are reference-counted; a block returns to the free pool when its count drops to zero.
With prefix caching, every full block is registered, once the step computing its K/V is
scheduled, under the hash of its tokens chained over everything before it (`block_hash`), so
a request with the same prefix takes a reference to those blocks instead of recomputing
them. A freed block keeps its hash and stays findable until it is reused: free blocks
without a hash are handed out first, then cached ones least recently freed first (LRU).
"""

from __future__ import annotations

import hashlib
from array import array
from collections import OrderedDict, deque
from collections.abc import Sequence

BlockHash = bytes
ROOT_HASH: BlockHash = b""  # the "parent" of a sequence's first block


def block_hash(parent: BlockHash, token_ids: Sequence[int]) -> BlockHash:
    """SHA-256 of the parent's hash and the block's tokens: a collision would silently give a
    request another prompt's K/V, so a cryptographic hash rather than Python's `hash`."""
    return hashlib.sha256(parent + array("q", token_ids).tobytes()).digest()


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int, enable_prefix_caching: bool = True):
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.enable_prefix_caching = enable_prefix_caching
        self.ref_counts = [0] * num_blocks
        self._free: deque[int] = deque(range(num_blocks))  # free, no hash: used first
        self._free_cached: OrderedDict[int, None] = OrderedDict()  # free, hashed: LRU first
        self._hash_of: list[BlockHash | None] = [None] * num_blocks
        self._block_of: dict[BlockHash, int] = {}
        self.num_evictions_total = 0

    @property
    def num_free_blocks(self) -> int:
        """Free blocks, cached ones included: they are reclaimed as soon as they are needed."""
        return len(self._free) + len(self._free_cached)

    @property
    def num_cached_blocks(self) -> int:
        return len(self._block_of)

    @property
    def usage(self) -> float:
        return 1.0 - self.num_free_blocks / self.num_blocks

    def blocks_needed(self, block_table: list[int], num_tokens: int) -> int:
        """Extra blocks to hold num_tokens in total, given the blocks already in the table."""
        total = -(-num_tokens // self.block_size)
        return max(0, total - len(block_table))

    # ---- prefix reuse ---------------------------------------------------------------------

    def find_cached(self, hashes: Sequence[BlockHash]) -> list[int]:
        """The blocks holding the longest cached run of `hashes` from the start (no references
        are taken: pass them to `allocate(..., reuse=...)`)."""
        if not self.enable_prefix_caching:
            return []
        blocks = []
        for digest in hashes:
            block = self._block_of.get(digest)
            if block is None:
                break
            blocks.append(block)
        return blocks

    def register(self, block_table: list[int], hashes: Sequence[BlockHash], start: int) -> None:
        """Make blocks [start, len(hashes)) of the table findable; their K/V must be computed
        by the step being scheduled. A hash already held by another block keeps that block
        (the duplicate stays private)."""
        if not self.enable_prefix_caching:
            return
        for index in range(start, len(hashes)):
            block, digest = block_table[index], hashes[index]
            if self._hash_of[block] is None and digest not in self._block_of:
                self._hash_of[block] = digest
                self._block_of[digest] = block

    def unregister(self, block_table: list[int], start: int) -> None:
        """Withdraw blocks [start:] of the table (offered, then never computed)."""
        for block in block_table[start:]:
            self._forget(block)

    def reset_prefix_cache(self) -> None:
        """Forget every hash of a free block (benchmarks: start cold); shared blocks stay."""
        for block in self._free_cached:
            self._forget(block)
            self._free.append(block)
        self._free_cached.clear()

    # ---- allocation -----------------------------------------------------------------------

    def can_allocate(
        self, block_table: list[int], num_tokens: int, reuse: Sequence[int] = ()
    ) -> bool:
        """Whether `allocate` would succeed; reused blocks that are free count against it."""
        needed = max(0, -(-num_tokens // self.block_size) - len(block_table) - len(reuse))
        revived = sum(1 for block in reuse if self.ref_counts[block] == 0)
        return needed + revived <= self.num_free_blocks

    def allocate(self, block_table: list[int], num_tokens: int, reuse: Sequence[int] = ()) -> None:
        """Append `reuse` (cached blocks, one reference each) to block_table, then grow it with
        fresh blocks until it covers num_tokens; the caller checked can_allocate."""
        if not self.can_allocate(block_table, num_tokens, reuse):
            raise RuntimeError(f"cannot fit {num_tokens} tokens: {self.num_free_blocks} free")
        for block in reuse:
            if self.ref_counts[block] == 0:
                del self._free_cached[block]
            self.ref_counts[block] += 1
            block_table.append(block)
        for _ in range(self.blocks_needed(block_table, num_tokens)):
            block_table.append(self._take_free_block())

    def _take_free_block(self) -> int:
        if self._free:
            block = self._free.popleft()
        else:
            block, _ = self._free_cached.popitem(last=False)
            self._forget(block)
            self.num_evictions_total += 1
        self.ref_counts[block] = 1
        return block

    def _forget(self, block: int) -> None:
        digest = self._hash_of[block]
        if digest is not None:
            self._hash_of[block] = None
            if self._block_of.get(digest) == block:
                del self._block_of[digest]

    def share(self, block: int) -> None:
        """Another owner takes a reference to an allocated block."""
        if self.ref_counts[block] < 1:
            raise ValueError(f"block {block} is not allocated")
        self.ref_counts[block] += 1

    def free(self, block_table: list[int]) -> None:
        """Drop the table's references and clear it. Last block first: a sequence's tail is
        the least likely to be shared, so its blocks are evicted before its head's."""
        for block in reversed(block_table):
            if self.ref_counts[block] < 1:
                raise ValueError(f"block {block} freed twice")
            self.ref_counts[block] -= 1
            if self.ref_counts[block] == 0:
                if self._hash_of[block] is not None:
                    self._free_cached[block] = None
                else:
                    self._free.append(block)
        block_table.clear()
