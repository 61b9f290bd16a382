"""Child process for test_ionframe: parse thousands of mutated Ion streams through ``ionparse``.

    python tests/ionmutate.py SEED COUNT (binary|text)

Prints each case's number and hex before parsing it, so the parent can name
the input if this process hangs or dies; prints DONE at the end.  Only
IonParseError may come out of a parse: anything else is a traceback here and
a failed test there.
"""

from __future__ import annotations

import contextlib
import io
import random
import sys

from amazon.ion import simpleion
from qldb_migrate.verify.ionparse import IonParseError, iter_values, loads

_SCALARS = [1, -5, 2**70, "", "short", "s" * 20, 1.5, None, True, b"xy", simpleion.loads("2020-01-01T00:00Z"),
            simpleion.loads("1.25d3")]


def _value(rng: random.Random, depth: int = 0) -> object:
    roll = rng.random()
    if depth > 4 or roll < 0.3:
        return rng.choice(_SCALARS)
    if roll < 0.6:
        return [_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {f"k{i}": _value(rng, depth + 1) for i in range(rng.randint(0, 4))}


def mutate(rng: random.Random, data: bytes) -> bytes:
    """1 to 3 edits past the version marker: bit flips, cuts, NOP pads, random bytes, container descriptors."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op, pos = rng.random(), rng.randrange(4, max(5, len(b)))
        if op < 0.35:
            b[pos % len(b)] ^= 1 << rng.randrange(8)
        elif op < 0.5:
            del b[pos:pos + rng.randint(1, 8)]
        elif op < 0.7:  # a NOP pad, the C reader's weak spot
            size = rng.randint(0, 6)
            b[pos:pos] = bytes([size]) + bytes(size)
        elif op < 0.85:
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
        else:  # a container or length descriptor
            b[pos % len(b)] = rng.choice([0x03, 0x0E, 0xB3, 0xD3, 0xE3, 0x8E, 0xDE, 0xD1])
    return bytes(b)


def main() -> None:
    seed, count, mode = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    rng = random.Random(seed)
    bases = []
    for _ in range(30):
        values = [_value(rng) for _ in range(3)]
        bases.append(simpleion.dumps(values, binary=True) if mode == "binary"
                     else simpleion.dumps(values, binary=False).encode())
    for case in range(count):
        data = mutate(rng, rng.choice(bases))
        print(case, data.hex(), flush=True)
        with contextlib.suppress(IonParseError):
            loads(data)
        with contextlib.suppress(IonParseError):
            list(iter_values(lambda d=data: io.BytesIO(d)))
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
