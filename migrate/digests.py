"""Digest files users hold, in the three shapes they come in.

* GetDigest output (AWS CLI / SDK JSON): ``{"Digest": b64, "DigestTipAddress": {"IonText": …}}``
* the console's saved ``.ion.txt``: an Ion struct with ``digest`` and
  ``digestTipAddress`` (the address as Ion text in a string)
* the AWS migration sample's ``…proofs.json`` sidecar: GetDigest's fields plus
  ``LastBlockNum`` and a ``Proof`` of that block

JSON is Ion text, so one Ion parse reads all three; field names are matched
without regard to case and blobs may be Ion blobs or base64 strings.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from typing import Any

from .verify.chain import Digest
from .verify.findings import BlockAddress
from .verify.ionparse import IonParseError, loads
from .verify.ionvalue import is_null


class DigestFileError(ValueError):
    """A digest file that cannot be read as a digest; the message names the file and field."""


def field_any_case(struct: Any, *names: str) -> Any:
    """The first of ``names`` present, ignoring case: the three digest shapes spell fields differently."""
    wanted = {n.lower() for n in names}
    try:
        items = struct.items()
    except AttributeError:
        return None
    for key, value in items:
        if key is not None and str(key).lower() in wanted:
            return value
    return None


def _blob(value: Any, what: str, source: str) -> bytes:
    if isinstance(value, bytes | bytearray):
        return bytes(value)
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise DigestFileError(f"{source}: {what} is not valid base64") from exc
    raise DigestFileError(f"{source}: {what} is missing or not a blob")


def _ion_text(value: Any) -> Any:
    """``{"IonText": "…"}`` or a bare Ion-text string, parsed; anything else as is."""
    inner = field_any_case(value, "IonText")
    if inner is not None:
        value = inner
    if isinstance(value, str):
        return loads(value)
    return value


def parse_address(value: Any, source: str) -> BlockAddress:
    try:
        return BlockAddress.from_ion(_ion_text(value))
    except (KeyError, TypeError, ValueError, IonParseError) as exc:
        raise DigestFileError(f"{source}: DigestTipAddress is not a block address ({exc})") from exc


def parse_proof(value: Any, source: str) -> tuple[bytes, ...]:
    try:
        items = _ion_text(value)
    except IonParseError as exc:
        raise DigestFileError(f"{source}: Proof is not valid Ion ({exc})") from exc
    if is_null(items) or not isinstance(items, list):
        raise DigestFileError(f"{source}: Proof is not a list of hashes")
    return tuple(_blob(h, f"Proof[{i}]", source) for i, h in enumerate(items))


def parse_digest(data: bytes, source: str) -> Digest:
    try:
        doc = loads(data)
    except IonParseError as exc:
        raise DigestFileError(f"{source}: not a digest file (neither JSON nor Ion): {exc}") from exc
    digest_value = field_any_case(doc, "Digest", "digestHash")
    tip_value = field_any_case(doc, "DigestTipAddress", "digestTipAddress")
    if digest_value is None or tip_value is None:
        raise DigestFileError(f"{source}: a digest file needs Digest and DigestTipAddress fields")
    digest = _blob(digest_value, "Digest", source)
    if len(digest) != 32:
        raise DigestFileError(f"{source}: Digest is {len(digest)} bytes, a SHA-256 digest is 32")
    tip = parse_address(tip_value, source)
    proof_value = field_any_case(doc, "Proof")
    proof = None if proof_value is None else parse_proof(proof_value, source)
    last_block = field_any_case(doc, "LastBlockNum")
    proof_block = None if last_block is None or is_null(last_block) else int(last_block)
    if proof_block is not None and proof_block > tip.sequence_no:
        raise DigestFileError(f"{source}: LastBlockNum {proof_block} lies beyond the digest tip {tip.sequence_no}")
    return Digest(digest, tip, source, proof, proof_block)


def load_digest_file(path: Path) -> Digest:
    return parse_digest(path.read_bytes(), str(path))
