"""Paths to the test vectors kept in the repository (``tests/vectors_data``).

* ``ion_hash_tests.ion`` — the official Ion Hash test suite (amazon-ion/ion-hash-test, Apache-2.0; its
  LICENSE and NOTICE lie beside it);
* ``awscli-vehicle-registration/`` — a real QLDB block, revision, proofs and digest as the AWS CLI printed them;
* ``concurrency-blog-block58.json`` — statements and statementDigests of a real published ``get-block``
  (parameterized statements, whose digests fold in parameters the journal does not hold).
"""

from __future__ import annotations

from pathlib import Path

VECTORS = Path(__file__).resolve().parent / "vectors_data"
ION_HASH_TESTS = VECTORS / "ion_hash_tests.ion"
AWSCLI = VECTORS / "awscli-vehicle-registration"
PARAMETERIZED_BLOCK = VECTORS / "concurrency-blog-block58.json"
