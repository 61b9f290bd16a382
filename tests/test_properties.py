"""Properties of the verification core: every tamper detected, and honest about what is not."""

from __future__ import annotations

import datetime as dt
from typing import Any

from amazon.ion import simpleion
from amazon.ion.equivalence import ion_equals
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from qldb_migrate.ionwrite import dumps_binary
from qldb_migrate.sample.blocks import BlockSpec, RevisionSpec, build_block, metadata, struct
from qldb_migrate.verify.block import check_block
from qldb_migrate.verify.hashes import MerkleAccumulator, dot, merkle_root
from qldb_migrate.verify.ionhash import ion_hash

from tests.strategies import documents, ion_values

T0 = dt.datetime(2024, 5, 6, 7, 8, 9, 123000, tzinfo=dt.UTC)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def make_block(docs: list[Any], system: int = 1) -> Any:
    revisions = [
        RevisionSpec(metadata(f"doc{i}", i % 3, T0, "txA"), doc, table_name="Accounts", table_id="tbl1")
        for i, doc in enumerate(docs)
    ]
    revisions += [RevisionSpec(system_hash=bytes([i + 1]) * 32) for i in range(system)]
    spec = BlockSpec("strandA", 7, T0, "txA", [("INSERT INTO Accounts ?", docs[:1]), ("UPDATE Accounts SET x = 1", [])],
                     revisions,
                     internal_entries=[b"\x42" * 32])
    block, _ = build_block(spec, b"\x17" * 32)
    # Round-trip through binary Ion, as a reader would deliver it.
    return simpleion.loads(dumps_binary(block))


def _hash_slots(block: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) that holds a hash in the block."""
    slots: list[tuple[Any, Any]] = [(block, "blockHash"), (block, "entriesHash"), (block, "previousBlockHash")]
    slots += [(block["entriesHashList"], i) for i in range(len(block["entriesHashList"]))]
    slots += [(rev, "hash") for rev in block["revisions"]]
    slots += [(s, "statementDigest") for s in block["transactionInfo"]["statements"]]
    return slots


@SETTINGS
@given(st.lists(documents, min_size=1, max_size=3), st.data())
def test_any_bit_flip_in_any_hash_is_detected(docs: list[Any], data: st.DataObject) -> None:
    block = make_block(docs)
    assert check_block(block).ok
    slots = _hash_slots(block)
    container, key = slots[data.draw(st.integers(0, len(slots) - 1), label="slot")]
    original = bytes(container[key])
    bit = data.draw(st.integers(0, len(original) * 8 - 1), label="bit")
    flipped = bytearray(original)
    flipped[bit // 8] ^= 1 << (bit % 8)
    container[key] = simpleion.loads(dumps_binary(bytes(flipped)))
    assert not check_block(block).ok


def _leaf_paths(value: Any, path: tuple = ()) -> list[tuple]:
    """Paths to every value inside ``value`` (containers and scalars alike)."""
    out = [path] if path else []
    if isinstance(value, dict) or hasattr(value, "iteritems"):
        items = list(value.iteritems()) if hasattr(value, "iteritems") else list(value.items())
        for i, (_, child) in enumerate(items):
            out += _leaf_paths(child, (*path, ("field", i)))
    elif isinstance(value, list):
        for i, child in enumerate(value):
            out += _leaf_paths(child, (*path, ("index", i)))
    return out


def _replace(root: Any, path: tuple, new: Any) -> Any:
    """Replace the value at ``path``; returns the old one."""
    parent = root
    for kind, i in path[:-1]:
        parent = list(parent.iteritems())[i][1] if kind == "field" else parent[i]
    kind, i = path[-1]
    if kind == "index":
        old, parent[i] = parent[i], new
        return old
    items = list(parent.iteritems())
    old = items[i][1]
    rebuilt = [(k, new if j == i else v) for j, (k, v) in enumerate(items)]
    for k in list(parent.keys()):
        del parent[k]
    for k, v in rebuilt:
        parent.add_item(k, v)
    return old


@SETTINGS
@given(st.lists(documents, min_size=1, max_size=3), st.sampled_from(["data", "metadata", "transactionInfo"]),
       ion_values, st.data())
def test_any_value_change_is_detected(docs: list[Any], where: str, new: Any, data: st.DataObject) -> None:
    block = make_block(docs)
    if where == "transactionInfo":
        root = block["transactionInfo"]
    else:
        index = data.draw(st.integers(0, len(docs) - 1), label="revision")
        root = block["revisions"][index][where]
    paths = _leaf_paths(root)
    assume(paths)
    path = paths[data.draw(st.integers(0, len(paths) - 1), label="path")]
    new_value = simpleion.loads(dumps_binary(new))
    old = _replace(root, path, new_value)
    assume(not ion_equals(old, new_value))  # equivalence by amazon-ion, not by our hash
    assert not check_block(block).ok


@SETTINGS
@given(ion_values, ion_values)
def test_ion_hash_separates_non_equivalent_values(a: Any, b: Any) -> None:
    a = simpleion.loads(dumps_binary(a))
    b = simpleion.loads(dumps_binary(b))
    assert (ion_hash(a) == ion_hash(b)) == ion_equals(a, b)


def _rfc6962(leaves: list[Any]) -> Any:
    n = len(leaves)
    if n == 1:
        return leaves[0]
    k = 1 << ((n - 1).bit_length() - 1)
    return (_rfc6962(leaves[:k]), _rfc6962(leaves[k:]))


def test_merkle_shape_is_rfc6962_for_1_to_300_leaves() -> None:
    accumulator = MerkleAccumulator()
    for n in range(1, 301):
        leaves = list(range(n))
        assert merkle_root(leaves, combine=lambda a, b: (a, b)) == _rfc6962(leaves), n
        leaf = bytes([n % 256]) * 32
        accumulator.append(leaf)
    # the streaming accumulator agrees with the batch root at every prefix
    streamed = MerkleAccumulator()
    hashes = [bytes([i % 251, i // 251]) * 16 for i in range(300)]
    for n, h in enumerate(hashes, start=1):
        streamed.append(h)
        assert streamed.root() == merkle_root(hashes[:n])


def test_dot_orders_by_signed_bytes_from_the_end() -> None:
    a = bytes(31) + b"\x7f"  # last byte +127
    b = bytes(31) + b"\x80"  # last byte -128 as a signed byte: smaller
    import hashlib

    assert dot(a, b) == hashlib.sha256(b + a).digest() == dot(b, a)
    assert dot(a, b"") == a and dot(b"", b) == b


def test_commutative_reorderings_are_reported_unproven_not_verified() -> None:
    """dot is commutative: what the hashes cannot see, the result must say it cannot see.

    Swapping two sibling revisions (or two sibling entries) keeps every hash;
    the check passes its hash checks but lists revision and entry order among
    what is not proven.  A swap that changes the tree shape is caught.
    """
    docs = [struct({"n": 1}), struct({"n": 2})]
    block = make_block(docs, system=0)
    revisions = block["revisions"]
    revisions[0], revisions[1] = revisions[1], revisions[0]
    swapped = check_block(block)
    assert swapped.ok  # the hashes cannot tell
    assert any("order of revisions" in u for u in swapped.unproven)
    assert any("order of entries" in u for u in swapped.unproven)
    assert any("blockAddress" in u for u in swapped.unproven)

    block = make_block(docs, system=0)
    entries = block["entriesHashList"]
    assert len(entries) == 3
    entries[0], entries[1] = entries[1], entries[0]  # siblings: same root
    assert check_block(block).ok
    block = make_block(docs, system=0)
    entries = block["entriesHashList"]
    entries[0], entries[2] = entries[2], entries[0]  # changes the shape: caught
    assert {f.code for f in check_block(block).findings} == {"entries-hash-mismatch", "block-hash-mismatch"}
