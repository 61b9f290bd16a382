"""QLDB DDL statements, read from the journal's statement texts — parsed exactly, never guessed.

QLDB records every statement's text in ``transactionInfo.statements[i].statement``.
The text is all the journal says about schema changes (no table id for a
``CREATE TABLE``, no index id for a ``CREATE INDEX``), so it is parsed exactly
and anything that looks like DDL but is not one of QLDB's five forms is
``Unparseable`` — reported, never approximated.  The forms (Amazon QLDB
Developer Guide, PartiQL reference pages ql-reference.create-table,
-create-index, -drop-index, -drop-table, -undrop-table)::

    CREATE TABLE t [WITH (aws_tags = `{'key': 'value', ...}`)]
    CREATE INDEX ON t (field)                  -- one top-level field only
    DROP INDEX "indexId" ON t [WITH (purge = true)]
    DROP TABLE t
    UNDROP TABLE "tableId"

Lexical rules, from QLDB's "Querying Ion with PartiQL" page and the PartiQL
reference lexer (partiql-lang-kotlin ``PartiQLTokens.g4``):

* every QLDB name — table and field names included — is case sensitive, so a
  plain identifier is kept exactly as written (no case folding, unlike SQL);
  a plain identifier is ``[A-Za-z_$][A-Za-z0-9_$]*``;
* a double-quoted identifier may hold anything, ``""`` standing for one
  ``"``; ``"Person"`` and ``Person`` name the same table;
* keywords are case insensitive; ``aws_tags`` and ``purge`` are option names
  and, as the DROP INDEX page says of ``purge``, lower case only; ``true`` is
  PartiQL's boolean literal (any case);
* whitespace is space, tab, CR, LF; ``--`` comments run to the end of the
  line, ``/* */`` comments do not nest; one trailing ``;`` is allowed;
* backticks enclose an Ion literal (the tags struct), read with amazon-ion.

Deliberately strict, each a reported ``Unparseable``: an index on a path or
on several fields (QLDB allows one top-level field), ``purge`` other than
true, tags given by a ``?`` parameter or not a struct of strings, options
QLDB does not document, anything after the statement.  ``DROP INDEX`` without
``WITH (purge = true)`` (the page says the clause is required) is accepted
with ``purge=False``: what it drops is unambiguous.  The index and table ids of
``DROP INDEX``/``UNDROP TABLE`` are documented as quoted; a plain identifier
there is accepted too, since names are case sensitive and mean the same text.
QLDB's reserved words are not checked: QLDB refused such statements, so they
never reach a journal.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

# --- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CreateTable:
    name: str
    tags: dict[str, str] | None = field(default=None, hash=False)  # None: no WITH clause


@dataclass(frozen=True)
class CreateIndex:
    table: str
    field: str


@dataclass(frozen=True)
class DropIndex:
    index_id: str
    table: str
    purge: bool


@dataclass(frozen=True)
class DropTable:
    name: str


@dataclass(frozen=True)
class UndropTable:
    table_id: str


DdlStatement = CreateTable | CreateIndex | DropIndex | DropTable | UndropTable


@dataclass(frozen=True)
class NotDdl:
    """A statement that does not start with CREATE, DROP or UNDROP (queries, DML, EXEC, ...)."""


@dataclass(frozen=True)
class Unparseable:
    """Starts like DDL (or cannot be told apart from it) but is not exactly one of QLDB's forms."""

    reason: str


# --- lexer ---------------------------------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_WHITESPACE = " \t\r\n"
_LINE_END = re.compile(r"\r\n?|\n")  # a -- comment ends at CR or LF, as in the PartiQL lexer
_PUNCT = "();=,?.[]"


class _Error(Exception):
    pass


@dataclass(frozen=True)
class _Token:
    kind: str  # "word", "quoted", "ion", "punct", "other" (any other character), "end"
    text: str  # the word as written, the unescaped identifier, the Ion text, the character
    at: int  # offset in the statement

    def describe(self) -> str:
        if self.kind == "end":
            return "the end of the statement"
        if self.kind == "quoted":
            return f'"{self.text}" (quoted identifier) at offset {self.at}'
        if self.kind == "ion":
            return f"an Ion literal at offset {self.at}"
        return f"{self.text!r} at offset {self.at}"


def _skip_blank(text: str, i: int) -> int:
    """The offset of the next token: whitespace and both comment forms skipped."""
    n = len(text)
    while i < n:
        c = text[i]
        if c in _WHITESPACE:
            i += 1
        elif text.startswith("--", i):
            end = _LINE_END.search(text, i)
            i = n if end is None else end.end()
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                raise _Error(f"unterminated /* comment at offset {i}")
            i = end + 2
        else:
            break
    return i


def _ion_end(text: str, start: int) -> int:
    """The offset of the backtick closing the Ion literal opened at ``start``.

    A backtick inside an Ion string, quoted symbol or comment does not close it
    (as in the PartiQL lexer's ION mode).
    """
    i, n = start + 1, len(text)
    while i < n:
        if text[i] == "`":
            return i
        if text.startswith("'''", i):
            i = _quoted_end(text, i + 3, "'''")
        elif text[i] in "\"'":
            i = _quoted_end(text, i + 1, text[i])
        elif text.startswith("//", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            i = n if end < 0 else end + 2
        else:
            i += 1
    raise _Error(f"unterminated Ion literal (backtick) at offset {start}")


def _quoted_end(text: str, i: int, quote: str) -> int:
    """Just past the closing ``quote`` of an Ion string or symbol whose text starts at ``i``."""
    n = len(text)
    while i < n:
        if text[i] == "\\":
            i += 2
        elif text.startswith(quote, i):
            return i + len(quote)
        else:
            i += 1
    return n  # unterminated: the caller then finds no closing backtick


def _tokens(text: str) -> Iterator[_Token]:
    """Tokens one at a time, so a statement that is not DDL is classified from its first token alone."""
    i = 0
    while True:
        i = _skip_blank(text, i)
        if i >= len(text):
            yield _Token("end", "", i)
            return
        c = text[i]
        word = _WORD.match(text, i)
        if word:
            yield _Token("word", word.group(), i)
            i = word.end()
        elif c == '"':
            j, parts = i + 1, []
            while True:
                end = text.find('"', j)
                if end < 0:
                    raise _Error(f"unterminated quoted identifier at offset {i}")
                parts.append(text[j:end])
                if text.startswith('""', end):
                    parts.append('"')
                    j = end + 2
                else:
                    break
            yield _Token("quoted", "".join(parts), i)
            i = end + 1
        elif c == "`":
            end = _ion_end(text, i)
            yield _Token("ion", text[i + 1 : end], i)
            i = end + 1
        elif c in _PUNCT:
            yield _Token("punct", c, i)
            i += 1
        else:
            yield _Token("other", c, i)
            i += 1


# --- parser --------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, tokens: Iterator[_Token]) -> None:
        self._tokens = tokens
        self.current: _Token = next(tokens)

    def advance(self) -> _Token:
        token = self.current
        self.current = next(self._tokens)
        return token

    def keyword(self, *words: str) -> str:
        """One of ``words`` (any case), consumed."""
        token = self.current
        if token.kind == "word" and token.text.upper() in words:
            self.advance()
            return token.text.upper()
        raise _Error(f"expected {' or '.join(words)}, found {token.describe()}")

    def exact(self, word: str) -> None:
        """``word`` exactly as written (a case-sensitive option name)."""
        token = self.current
        if token.kind == "word" and token.text == word:
            self.advance()
            return
        hint = " (it is case sensitive)" if token.kind == "word" and token.text.lower() == word else ""
        raise _Error(f"expected {word}{hint}, found {token.describe()}")

    def punct(self, char: str) -> None:
        token = self.current
        if token.kind == "punct" and token.text == char:
            self.advance()
            return
        raise _Error(f"expected {char!r}, found {token.describe()}")

    def is_keyword(self, word: str) -> bool:
        return self.current.kind == "word" and self.current.text.upper() == word

    def identifier(self, what: str) -> str:
        token = self.current
        if token.kind in ("word", "quoted"):
            if not token.text:
                raise _Error(f"empty {what} at offset {token.at}")
            self.advance()
            return token.text
        if token.kind == "punct" and token.text == "?":
            raise _Error(f"{what} given by a parameter (?): its value is not in the journal")
        raise _Error(f"expected {what}, found {token.describe()}")

    def end(self) -> None:
        if self.current.kind == "punct" and self.current.text == ";":
            self.advance()
        if self.current.kind != "end":
            raise _Error(f"unexpected {self.current.describe()} after the statement")


def _tags(ion_text: str) -> dict[str, str]:
    """The tags struct: Ion field names to strings (the page writes them as quoted symbols)."""
    from amazon.ion import simpleion
    from amazon.ion.core import IonType
    from amazon.ion.simple_types import IonPyNull

    try:
        value = simpleion.loads(ion_text, single_value=True)
    except Exception as exc:  # amazon-ion raises plain exceptions for bad text
        raise _Error(f"aws_tags is not one Ion value: {exc}") from exc
    if getattr(value, "ion_type", None) is not IonType.STRUCT or isinstance(value, IonPyNull):
        raise _Error("aws_tags is not an Ion struct")
    tags: dict[str, str] = {}
    for key, item in value.iteritems():
        name = getattr(key, "text", key)
        kind = getattr(item, "ion_type", None)
        text = item.text if kind is IonType.SYMBOL else item
        if not isinstance(name, str) or isinstance(item, IonPyNull) or kind not in (IonType.STRING, IonType.SYMBOL) \
                or not isinstance(text, str):
            raise _Error("aws_tags must map names to strings")
        if name in tags:
            raise _Error(f"aws_tags names {name!r} twice")
        tags[name] = str(text)
    return tags


def _create(p: _Parser) -> DdlStatement:
    what = p.keyword("TABLE", "INDEX")
    if what == "TABLE":
        name = p.identifier("a table name")
        tags = None
        if p.is_keyword("WITH"):
            p.advance()
            p.punct("(")
            p.exact("aws_tags")
            p.punct("=")
            if p.current.kind != "ion":
                if p.current.kind == "punct" and p.current.text == "?":
                    raise _Error("aws_tags given by a parameter (?): the tags are not in the journal")
                raise _Error(f"expected the tags as an Ion literal in backticks, found {p.current.describe()}")
            tags = _tags(p.advance().text)
            p.punct(")")
        p.end()
        return CreateTable(name, tags)
    p.keyword("ON")
    table = p.identifier("a table name")
    p.punct("(")
    field_name = p.identifier("a field name")
    if p.current.kind == "punct" and p.current.text in ".[":
        raise _Error("a QLDB index is on one top-level field, not a path")
    if p.current.kind == "punct" and p.current.text == ",":
        raise _Error("a QLDB index is on one field; composite indexes do not exist")
    p.punct(")")
    p.end()
    return CreateIndex(table, field_name)


def _drop(p: _Parser) -> DdlStatement:
    what = p.keyword("TABLE", "INDEX")
    if what == "TABLE":
        name = p.identifier("a table name")
        p.end()
        return DropTable(name)
    index_id = p.identifier("an index id")
    p.keyword("ON")
    table = p.identifier("a table name")
    purge = False
    if p.is_keyword("WITH"):
        p.advance()
        p.punct("(")
        p.exact("purge")
        p.punct("=")
        p.keyword("TRUE")  # the only value QLDB supports
        p.punct(")")
        purge = True
    p.end()
    return DropIndex(index_id, table, purge)


def _undrop(p: _Parser) -> DdlStatement:
    p.keyword("TABLE")
    table_id = p.identifier("a table id")
    p.end()
    return UndropTable(table_id)


_STARTS = {"CREATE": _create, "DROP": _drop, "UNDROP": _undrop}


def parse_statement(text: str) -> DdlStatement | NotDdl | Unparseable:
    """Classify and parse one statement text from ``transactionInfo.statements``."""
    try:
        parser = _Parser(_tokens(text))
    except _Error as exc:  # the first token could not be read: DDL or not cannot be told
        return Unparseable(str(exc))
    first = parser.current
    rule = _STARTS.get(first.text.upper()) if first.kind == "word" else None
    if rule is None:
        return NotDdl()
    try:
        parser.advance()
        return rule(parser)
    except _Error as exc:
        return Unparseable(f"{first.text.upper()} statement: {exc}")


__all__ = [
    "CreateIndex",
    "CreateTable",
    "DdlStatement",
    "DropIndex",
    "DropTable",
    "NotDdl",
    "UndropTable",
    "Unparseable",
    "parse_statement",
]
