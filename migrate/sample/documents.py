"""Realistic documents for the sample ledger's tables.

The DMV tutorial tables (Person, Vehicle, VehicleRegistration,
DriversLicense) and a financial set (Accounts, Transactions, AuditLog).
Documents are 0.2–5 KB of nested structs, lists, decimals with trailing zeros,
timestamps of several precisions and offsets, blobs and symbols — what a
ledger really holds.  ``exotic_document`` adds every Ion type and the values
amazon-ion's C extension trips over.
"""

from __future__ import annotations

import datetime as _dt
import random
import string
from decimal import Decimal
from typing import Any

from amazon.ion.core import IonType, Timestamp, TimestampPrecision
from amazon.ion.simple_types import IonPyBytes, IonPyList, IonPyNull, IonPySymbol

from .blocks import struct

TABLES = ("Person", "Vehicle", "VehicleRegistration", "DriversLicense", "Accounts", "Transactions", "AuditLog")

_FIRST = ["Raul", "Brent", "Alexis", "Patricia", "Fatima", "Wei", "Olga", "Kwame", "Sofia", "Arjun"]
_LAST = ["Lewis", "Logan", "Pena", "Johnson", "Khan", "Zhang", "Ivanova", "Mensah", "Rossi", "Patel"]
_CITIES = ["Everett", "Seattle", "Tacoma", "Spokane", "Olympia", "Bellevue", "Kent", "Yakima"]
_MAKES = [("Mercedes", "CLK 350"), ("Ford", "F150"), ("Tesla", "Model 3"), ("Toyota", "Prius"), ("Nissan", "Altima")]


def _id(rng: random.Random, n: int = 22) -> str:
    return "".join(rng.choice(string.ascii_letters + string.digits) for _ in range(n))


def _money(rng: random.Random, hi: int = 100000) -> Decimal:
    # two places, trailing zeros kept (Decimal('90.20') is not Decimal('90.2') in Ion)
    return Decimal(rng.randrange(0, hi * 100)).scaleb(-2)


def _date(rng: random.Random) -> Timestamp:
    d = _dt.date(1950, 1, 1) + _dt.timedelta(days=rng.randrange(0, 365 * 70))
    return Timestamp(d.year, d.month, d.day, precision=TimestampPrecision.DAY)


def _instant(rng: random.Random, base: _dt.datetime) -> Timestamp:
    moment = base + _dt.timedelta(seconds=rng.randrange(0, 86400 * 365), microseconds=rng.randrange(0, 10**6))
    offset = _dt.timezone(_dt.timedelta(minutes=rng.choice([0, 60, -300, 330, -480, 545])))
    local = moment.astimezone(offset)
    digits = rng.choice([0, 3, 6])
    if digits == 0:
        return Timestamp(local.year, local.month, local.day, local.hour, local.minute, local.second, 0, offset,
                         precision=TimestampPrecision.SECOND)
    micro = local.microsecond - local.microsecond % 10 ** (6 - digits)
    return Timestamp(local.year, local.month, local.day, local.hour, local.minute, local.second, micro, offset,
                     precision=TimestampPrecision.SECOND, fractional_precision=digits,
                     fractional_seconds=Decimal(micro).scaleb(-6).quantize(Decimal(1).scaleb(-digits)))


def _symbol(text: str) -> IonPySymbol:
    return IonPySymbol(text, None)


def _address(rng: random.Random) -> Any:
    return struct({"Street": f"{rng.randrange(1, 9999)} {rng.choice(_LAST)} St", "City": rng.choice(_CITIES),
                   "State": "WA", "Zip": f"98{rng.randrange(0, 999):03d}"})


def _note(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_FIRST + _LAST + _CITIES).lower() for _ in range(words))


#: The indexes each sample table is created with (the QLDB recipe's create-tables.sql and the DMV tutorial):
#: one top-level field each, as QLDB indexes are.
INDEXES = {
    "Person": ("GovId",),
    "Vehicle": ("VIN",),
    "VehicleRegistration": ("VIN", "LicensePlateNumber"),
    "DriversLicense": ("PersonId", "LicenseNumber"),
    "Accounts": ("accountId",),
    "Transactions": ("transactionId", "fromAccountId", "toAccountId"),
    "AuditLog": ("timestamp",),
}


def business_keys(table: str, number: int, rng: random.Random, accounts: list[str]) -> dict[str, Any]:
    """The fields that identify a document to its application, fixed at insert and kept by every update.

    ``number`` counts the table's inserts (ACC-001, TXN-001, ...); ``accounts`` are the account ids so far,
    for a transaction's two sides.
    """
    if table == "Person":
        return {"GovId": f"{100000000 + number * 7919 % 899999999}"}
    if table == "Vehicle":
        return {"VIN": f"1N4AL11D{number:09d}"}
    if table == "VehicleRegistration":
        return {"VIN": f"1N4AL11D{number:09d}", "LicensePlateNumber": f"LIC{number:06d}"}
    if table == "DriversLicense":
        return {"PersonId": _id(rng), "LicenseNumber": f"DL{number:07d}"}
    if table == "Accounts":
        return {"accountId": f"ACC-{number:03d}"}
    if table == "Transactions":
        sides = rng.sample(accounts, 2) if len(accounts) >= 2 else ["ACC-001", "ACC-002"]
        return {"transactionId": f"TXN-{number:03d}", "fromAccountId": sides[0], "toAccountId": sides[1]}
    if table == "AuditLog":
        return {"eventId": f"EVT-{number:05d}"}
    raise ValueError(f"unknown sample table {table}")


def document(table: str, rng: random.Random, base: _dt.datetime, keys: dict[str, Any] | None = None) -> Any:
    """A document for ``table`` (sizes ~0.2 to ~5 KB); ``keys`` (``business_keys``) overwrite its identifying fields."""
    doc = _document(table, rng, base)
    for name, value in (keys or {}).items():
        doc[name] = value
    return doc


def _document(table: str, rng: random.Random, base: _dt.datetime) -> Any:
    if table == "Person":
        return struct({
            "FirstName": rng.choice(_FIRST), "LastName": rng.choice(_LAST), "DOB": _date(rng),
            "GovId": f"{rng.randrange(10**8, 10**9)}", "GovIdType": rng.choice(["Driver License", "Passport"]),
            "Address": _address(rng), "Phones": [f"+1-206-555-{rng.randrange(0, 9999):04d}"
                                                 for _ in range(rng.randrange(0, 3))],
        })
    if table == "Vehicle":
        make, model = rng.choice(_MAKES)
        return struct({
            "VIN": _id(rng, 17).upper(), "Type": _symbol(rng.choice(["Sedan", "Truck", "SUV"])),
            "Year": rng.randrange(1990, 2025), "Make": make, "Model": model, "Color": rng.choice(["White", "Red"]),
            "Specs": struct({"EngineLitres": Decimal(rng.randrange(10, 60)).scaleb(-1), "Doors": rng.choice([2, 4]),
                             "Weight": float(rng.randrange(900, 3000))}),
        })
    if table == "VehicleRegistration":
        return struct({
            "VIN": _id(rng, 17).upper(), "LicensePlateNumber": _id(rng, 8).upper(), "State": "WA",
            "City": rng.choice(_CITIES), "PendingPenaltyTicketAmount": _money(rng, 500),
            "ValidFromDate": _date(rng), "ValidToDate": _date(rng),
            "Owners": struct({"PrimaryOwner": struct({"PersonId": _id(rng)}),
                              "SecondaryOwners": [struct({"PersonId": _id(rng)}) for _ in range(rng.randrange(0, 3))]}),
        })
    if table == "DriversLicense":
        return struct({
            "PersonId": _id(rng), "LicenseNumber": f"{rng.choice(_LAST).upper()[:5]}{rng.randrange(100, 999)}",
            "LicenseType": rng.choice(["Learner", "Probationary", "Full"]),
            "ValidFromDate": _date(rng), "ValidToDate": _date(rng),
        })
    if table == "Accounts":
        return struct({
            "accountId": _id(rng, 12), "owner": struct({"personId": _id(rng), "name": rng.choice(_LAST)}),
            "currency": _symbol(rng.choice(["USD", "EUR", "GBP"])), "balance": _money(rng),
            "overdraftLimit": Decimal(rng.randrange(0, 5)).scaleb(3), "openedAt": _instant(rng, base),
            "flags": IonPyList.from_value(IonType.SEXP, [_symbol("kyc"), _symbol("active")]),
            "limits": [struct({"kind": k, "amount": _money(rng, 20000)}) for k in ("daily", "monthly")],
        })
    if table == "Transactions":
        lines = rng.randrange(1, 64)  # the large documents: up to ~5 KB
        return struct({
            "transactionId": _id(rng, 16), "fromAccountId": _id(rng, 12), "toAccountId": _id(rng, 12),
            "amount": _money(rng), "fee": Decimal(rng.randrange(0, 500)).scaleb(-3),
            "timestamp": _instant(rng, base), "valueDate": _date(rng), "memo": _note(rng, rng.randrange(2, 12)),
            "lines": [struct({"seq": i, "account": _id(rng, 12), "debit": _money(rng, 1000),
                              "credit": _money(rng, 1000), "tags": [_symbol("gl"), f"cc-{rng.randrange(1, 99)}"]})
                      for i in range(lines)],
        })
    if table == "AuditLog":
        return struct({
            "actor": _id(rng, 10), "action": _symbol(rng.choice(["login", "update", "approve", "export"])),
            "timestamp": _instant(rng, base), "detail": _note(rng, rng.randrange(5, 40)),
            "checksum": IonPyBytes.from_value(IonType.BLOB, rng.randbytes(32)),
        })
    raise ValueError(f"unknown sample table {table}")


def exotic_document(rng: random.Random, long_strings: bool = True) -> Any:
    """Every Ion type and every precision trap, in one document."""
    utc = _dt.UTC
    plus = _dt.timezone(_dt.timedelta(hours=5, minutes=45))
    doc = struct([
        ("decimals", [Decimal("1.00"), Decimal("1.0E+3"), Decimal("-0.0"), Decimal("0E-10"), Decimal("1.23E-7"),
                      Decimal("12345678901234567890123456789012345678.90"), Decimal("7E+300")]),
        ("timestamps", [
            Timestamp(2007, 1, 1, precision=TimestampPrecision.YEAR),
            Timestamp(2007, 2, 1, precision=TimestampPrecision.MONTH),
            Timestamp(2007, 2, 23, precision=TimestampPrecision.DAY),
            Timestamp(2007, 2, 23, 12, 14, 0, 0, utc, precision=TimestampPrecision.MINUTE),
            Timestamp(2007, 2, 23, 12, 14, 33, 0, plus, precision=TimestampPrecision.SECOND),
            Timestamp(2007, 2, 23, 12, 14, 33, 79000, None, precision=TimestampPrecision.SECOND,
                      fractional_precision=3, fractional_seconds=Decimal("0.079")),
            Timestamp(2007, 2, 23, 12, 14, 33, 0, utc, precision=TimestampPrecision.SECOND,
                      fractional_precision=6, fractional_seconds=Decimal("0.000000")),
            Timestamp(2007, 2, 23, 12, 14, 33, 123456, utc, precision=TimestampPrecision.SECOND,
                      fractional_precision=6, fractional_seconds=Decimal("0.123456789")),
        ]),
        ("ints", [0, -1, 2**64 + 7, -(2**200) + 3]),
        ("floats", [0.0, -0.0, 1.5, float("inf"), float("-inf"), 6.02214076e23]),
        ("blob", IonPyBytes.from_value(IonType.BLOB, rng.randbytes(40) + b"\x0b\x0c\x0e")),
        ("clob", IonPyBytes.from_value(IonType.CLOB, b"plain ascii clob \x0b")),
        ("symbols", [_symbol("alpha"), _symbol(""), _symbol("with space")]),
        ("annotated", IonPyList.from_value(IonType.LIST, [1, 2], annotations=("units", "kg"))),
        ("nulls", [IonPyNull.from_value(t, None) for t in IonType]),
        ("nested", struct({"a": struct({"b": struct({"c": [struct({"d": IonPyList.from_value(IonType.SEXP, [1])})]})})})),  # noqa: E501
        ("dup", 1), ("dup", 2),
        ("unicode", "naïve café ☃ \U0001f600"),
    ])
    if long_strings:
        doc.add_item("long", "x" * 40000 + _note(rng, 20))
    return doc
