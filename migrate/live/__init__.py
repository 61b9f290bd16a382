"""The ledger after cut-over: PostgreSQL writes continue QLDB's hash chain, digests and proofs come from the database.

* ``reading`` — the Ion reading of a stored JSONB document (what a PostgreSQL-era revision hash covers);
* ``merkle`` — the block-hash Merkle tree kept as perfect-subtree roots: digests and audit paths in O(log n);
* ``cutover`` — turning a migrated ledger live;
* ``sealer`` — closing committed writes into blocks, one per transaction;
* ``serve`` — GetDigest, GetBlock and GetRevision from the database, in QLDB's formats.
"""
