"""RFC 9162 Merkle trees: the iterative build equals the RFC's recursive definition, proofs
verify, and any change to a proof fails it.

The reference functions below are written straight from RFC 9162 §2.1.1 and §2.1.3.1, with
nothing shared with the module under test except hashlib.
"""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.packs.factory import merkle


def ref_mth(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashlib.sha256(b"\x00" + d[0]).digest()
    k = 1
    while k * 2 < n:
        k *= 2
    return hashlib.sha256(b"\x01" + ref_mth(d[:k]) + ref_mth(d[k:])).digest()


def ref_path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = 1
    while k * 2 < n:
        k *= 2
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def leaves(n: int) -> list[bytes]:
    return [f"leaf-{i}".encode() for i in range(n)]


def test_empty_tree_root_is_hash_of_empty_string() -> None:
    assert merkle.root([]) == bytes.fromhex(
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_single_leaf_root_is_its_leaf_hash() -> None:
    assert merkle.root([b""]) == bytes.fromhex(
        # SHA-256 of the single byte 0x00.
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    )


def test_two_leaves_by_hand() -> None:
    a, b = hashlib.sha256(b"\x00a").digest(), hashlib.sha256(b"\x00b").digest()
    assert merkle.root([b"a", b"b"]) == hashlib.sha256(b"\x01" + a + b).digest()


def test_three_leaves_split_at_two_without_duplicating_the_last() -> None:
    h = [hashlib.sha256(b"\x00" + x).digest() for x in (b"a", b"b", b"c")]
    left = hashlib.sha256(b"\x01" + h[0] + h[1]).digest()
    assert merkle.root([b"a", b"b", b"c"]) == hashlib.sha256(b"\x01" + left + h[2]).digest()


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 33, 100, 257])
def test_root_equals_recursive_definition(n: int) -> None:
    assert merkle.root(leaves(n)) == ref_mth(leaves(n))


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 8, 13, 64, 100])
def test_every_path_equals_recursive_definition_and_verifies(n: int) -> None:
    d = leaves(n)
    root = ref_mth(d)
    for m in range(n):
        path = merkle.inclusion_proof(d, m)
        assert path == ref_path(m, d)
        assert merkle.verify_inclusion(merkle.leaf_hash(d[m]), m, n, path, root)


@pytest.mark.parametrize("n", [1, 5, 256, 300, 1000, 1025])
@pytest.mark.parametrize("block", [1, 4, 256])
def test_block_roots_combine_into_the_root(n: int, block: int) -> None:
    hashes = merkle.leaf_hashes(leaves(n))
    blocks = merkle.block_roots(hashes, block)
    assert len(blocks) == -(-n // block)
    assert merkle.root_of_nodes(blocks) == ref_mth(leaves(n))
    # A path over the levels above the blocks, prefixed by the path inside a block, is the
    # whole path.
    for m in {0, n // 2, n - 1}:
        start = m - m % block
        inner = merkle.inclusion_path(merkle.tree_levels(hashes[start : start + block]), m - start)
        outer = merkle.inclusion_path(merkle.tree_levels(blocks), m // block)
        assert inner + outer == ref_path(m, leaves(n))


def test_block_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError, match="power of two"):
        merkle.block_roots([b"x" * 32], 3)


def test_proof_for_an_index_outside_the_tree_is_refused() -> None:
    with pytest.raises(IndexError):
        merkle.inclusion_proof(leaves(3), 3)


def test_verifier_refuses_index_beyond_size_and_long_paths() -> None:
    d = leaves(4)
    root = ref_mth(d)
    path = ref_path(1, d)
    lh = merkle.leaf_hash(d[1])
    assert merkle.verify_inclusion(lh, 1, 4, path, root)
    assert not merkle.verify_inclusion(lh, 4, 4, path, root)
    assert not merkle.verify_inclusion(lh, -1, 4, path, root)
    assert not merkle.verify_inclusion(lh, 1, 4, [*path, path[0]], root)  # sn hits 0 first
    assert not merkle.verify_inclusion(lh, 1, 4, path[:1], root)  # sn not 0 at the end
    assert not merkle.verify_inclusion(lh, 1, 5, path, root)
    assert not merkle.verify_inclusion(lh[:31], 1, 4, path, root)


def _flip(value: bytes, bit: int) -> bytes:
    b = bytearray(value)
    b[bit // 8 % len(b)] ^= 1 << (bit % 8)
    return bytes(b)


# Distinct leaves: with two equal leaves, one's proof honestly proves the other's position too.
trees = st.lists(st.binary(max_size=40), min_size=1, max_size=70, unique=True)


@settings(max_examples=150, deadline=None)
@given(trees)
def test_every_leaf_of_a_random_tree_verifies(d: list[bytes]) -> None:
    root = merkle.root(d)
    assert root == ref_mth(d)
    for m, leaf in enumerate(d):
        assert merkle.verify_inclusion(
            merkle.leaf_hash(leaf), m, len(d), merkle.inclusion_proof(d, m), root
        )


@settings(max_examples=300, deadline=None)
@given(trees, st.data())
def test_any_flipped_bit_fails(d: list[bytes], data: st.DataObject) -> None:
    n = len(d)
    m = data.draw(st.integers(0, n - 1), label="leaf")
    root = merkle.root(d)
    path = merkle.inclusion_proof(d, m)
    lh = merkle.leaf_hash(d[m])
    bit = data.draw(st.integers(0, 255), label="bit")
    assert not merkle.verify_inclusion(_flip(lh, bit), m, n, path, root)
    assert not merkle.verify_inclusion(lh, m, n, path, _flip(root, bit))
    if path:
        k = data.draw(st.integers(0, len(path) - 1), label="path entry")
        bad = [*path[:k], _flip(path[k], bit), *path[k + 1 :]]
        assert not merkle.verify_inclusion(lh, m, n, bad, root)
    if n > 1:
        other = data.draw(st.integers(0, n - 1).filter(lambda i: i != m), label="index")
        assert not merkle.verify_inclusion(lh, other, n, path, root)
    # The index with one bit flipped (and still non-negative).
    flipped = m ^ (1 << data.draw(st.integers(0, 7), label="index bit"))
    assert not merkle.verify_inclusion(lh, flipped, n, path, root)
