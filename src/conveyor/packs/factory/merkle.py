"""Merkle trees as RFC 9162 (Certificate Transparency v2) defines them.

- leaf hash ``SHA-256(0x00 || data)``, node hash ``SHA-256(0x01 || left || right)`` (§2.1.1);
- a tree over ``n`` leaves splits at the largest power of two smaller than ``n``; the last node
  is never duplicated;
- inclusion proofs (§2.1.3.1) and their verification (§2.1.3.2).

The RFC defines the tree recursively; here it is built level by level, pairing nodes from the
left and carrying an odd last node up unchanged. That yields the same tree: every left subtree
of the recursive split is a perfect tree of ``2^k`` leaves aligned at a multiple of ``2^k``,
which is exactly what left-to-right pairing builds, and the carried node is the root of the
ragged right edge (``tests/unit/test_factory_merkle.py`` checks it against the recursion).
The iterative form avoids recursion depth and list slicing, which matters at 10^6 leaves.

The same alignment lets a large tree be built in pieces: the root of any aligned block of
``2^k`` leaves (or of the last, shorter block) is a node of the whole tree, so block roots
computed in parallel combine with :func:`root_of_nodes` into the tree's root.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

LEAF_PREFIX = b"\x00"
NODE_PREFIX = b"\x01"
HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()
"""The root of a tree with no leaves: the hash of the empty string (RFC 9162 §2.1.1)."""


def leaf_hash(data: bytes) -> bytes:
    """``SHA-256(0x00 || data)``."""
    return hashlib.sha256(LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(NODE_PREFIX + left + right).digest()


def leaf_hashes(leaves: Iterable[bytes]) -> list[bytes]:
    """The leaf hash of each item, in order."""
    sha = hashlib.sha256
    return [sha(LEAF_PREFIX + data).digest() for data in leaves]


def next_level(level: Sequence[bytes]) -> list[bytes]:
    """The level above ``level``: pairs hashed from the left, an odd last node carried up."""
    sha = hashlib.sha256
    # zip over one iterator twice yields the pairs without slicing copies; an odd last node
    # is dropped by zip and appended below.
    pairs = iter(level)
    upper = [sha(NODE_PREFIX + a + b).digest() for a, b in zip(pairs, pairs, strict=False)]
    if len(level) % 2:
        upper.append(level[-1])
    return upper


def root_of_nodes(nodes: Sequence[bytes]) -> bytes:
    """The root over a level of nodes (leaf hashes, or the roots of aligned blocks of ``2^k``
    leaves with only the last block possibly shorter)."""
    if not nodes:
        return EMPTY_ROOT
    level: Sequence[bytes] = nodes
    while len(level) > 1:
        level = next_level(level)
    return level[0]


def root(leaves: Iterable[bytes]) -> bytes:
    """MTH(D[n]): the root of the tree over ``leaves`` (raw leaf data, not hashes)."""
    return root_of_nodes(leaf_hashes(leaves))


def block_roots(hashes: Sequence[bytes], block: int) -> list[bytes]:
    """The root of each consecutive block of ``block`` leaf hashes (a power of two), the last
    block possibly shorter: the tree's nodes at height ``log2(block)``."""
    if block < 1 or block & (block - 1):
        raise ValueError(f"block must be a power of two, not {block}")
    level: Sequence[bytes] = hashes
    size = 1
    while size < block and len(level) > 1:
        level = next_level(level)
        size *= 2
    return list(level)


def inclusion_path(levels: Sequence[Sequence[bytes]], index: int) -> list[bytes]:
    """PATH(m, D[n]) (RFC 9162 §2.1.3.1) for leaf ``index``, leaf side first, from the
    levels of a tree: ``levels[0]`` are the nodes the path starts at and each next level is
    :func:`next_level` of the one before (as :func:`tree_levels` returns them).

    A carried odd node has no sibling at that level, so it adds nothing to the path.
    """
    path: list[bytes] = []
    i = index
    for level in levels:
        if len(level) <= 1:
            break
        sibling = i ^ 1
        if sibling < len(level):
            path.append(level[sibling])
        i //= 2
    return path


def tree_levels(nodes: Sequence[bytes]) -> list[list[bytes]]:
    """Every level from ``nodes`` up to the single root (``[[]]`` for no nodes)."""
    levels = [list(nodes)]
    while len(levels[-1]) > 1:
        levels.append(next_level(levels[-1]))
    return levels


def inclusion_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree over ``leaves`` (raw leaf data)."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf index {index} outside a tree of {len(leaves)} leaves")
    return inclusion_path(tree_levels(leaf_hashes(leaves)), index)


def verify_inclusion(
    leaf: bytes, index: int, tree_size: int, path: Sequence[bytes], root_hash: bytes
) -> bool:
    """True if ``path`` proves that the leaf with hash ``leaf`` sits at ``index`` in the tree
    of ``tree_size`` leaves whose root is ``root_hash``: RFC 9162 §2.1.3.2, step by step."""
    # 1. leaf_index must be inside the tree.
    if not 0 <= index < tree_size:
        return False
    if len(leaf) != HASH_SIZE or len(root_hash) != HASH_SIZE:
        return False
    # 2-3.
    fn, sn = index, tree_size - 1
    r = leaf
    # 4.
    for p in path:
        if len(p) != HASH_SIZE:
            return False
        # 4a.
        if sn == 0:
            return False
        # 4b.
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        # 4c.
        fn >>= 1
        sn >>= 1
    # 5.
    return sn == 0 and r == root_hash
