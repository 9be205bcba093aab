"""A small COQL engine: parse ``select ... from ... where ... order by ... limit ...`` and run it on records.

It covers what an incremental reader sends (comparisons, ``between``, ``in``, ``like``, ``is [not] null``,
``and``/``or`` with Zoho's pairwise parentheses, ``order by``, ``limit offset, count`` / ``limit n offset m``)
and answers with Zoho's error codes for the rest.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable

from .errors import ZohoError

MAX_LIMIT = 2000          # records per call (v7/v8 COQL limitations page)
MAX_REACH = 100_000       # offset + limit ("fetch up to 1,00,000 records using LIMIT and OFFSET")
DEFAULT_LIMIT = 200
MAX_CRITERIA = 25
MAX_SELECT = 50

_TOKEN = re.compile(r"""\s*(?:
    (?P<string>'(?:[^'\\]|\\.|'')*')
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<op><=|>=|!=|<>|=|<|>)
  | (?P<punct>[(),*])
  | (?P<word>[A-Za-z_$][A-Za-z0-9_$.]*)
)""", re.VERBOSE)

_KEYWORDS = {"select", "from", "where", "and", "or", "order", "by", "asc", "desc", "limit", "offset", "is", "not",
             "null", "in", "between", "like", "true", "false"}


def syntax_error(near: str | None = None, clause: str | None = None) -> ZohoError:
    if clause:
        return ZohoError(400, "SYNTAX_ERROR", "missing clause", {"clause": clause})
    return ZohoError(400, "SYNTAX_ERROR", "error occured while parsing the query", {"near": near or ""})


@dataclass(frozen=True)
class Token:
    kind: str   # string | number | op | punct | word | end
    text: str

    @property
    def lower(self) -> str:
        return self.text.lower()


def tokenize(query: str) -> list[Token]:
    tokens, pos = [], 0
    while pos < len(query):
        if query[pos:].strip() == "":
            break
        match = _TOKEN.match(query, pos)
        if not match:
            raise syntax_error(query[pos:].strip().split(" ")[0])
        kind = match.lastgroup or "word"
        tokens.append(Token(kind, match.group(kind)))
        pos = match.end()
    tokens.append(Token("end", ""))
    return tokens


# -- the parsed query ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    field: str
    operator: str          # = != > >= < <= in, not in, between, not between, like, not like, is null, is not null
    values: tuple[Any, ...]


@dataclass(frozen=True)
class Logical:
    operator: str          # and | or
    left: "Condition"
    right: "Condition"


Condition = Comparison | Logical


@dataclass(frozen=True)
class Query:
    fields: tuple[str, ...]
    module: str
    where: Condition
    order_by: tuple[tuple[str, bool], ...]   # (field, descending)
    offset: int
    limit: int


class Parser:
    """Recursive descent over the token list; every error is a Zoho SYNTAX_ERROR or INVALID_QUERY body."""

    def __init__(self, query: str) -> None:
        self.tokens = tokenize(query)
        self.pos = 0
        self.criteria = 0

    def peek(self) -> Token:
        return self.tokens[self.pos]

    def take(self) -> Token:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expect_word(self, word: str, clause: str | None = None) -> None:
        token = self.take()
        if token.lower != word:
            raise syntax_error(clause=clause) if clause and token.kind == "end" else syntax_error(token.text)

    def accept_word(self, word: str) -> bool:
        if self.peek().kind == "word" and self.peek().lower == word:
            self.pos += 1
            return True
        return False

    def parse(self) -> Query:
        self.expect_word("select")
        fields = self.field_list()
        self.expect_word("from", clause="from")
        module = self.take()
        if module.kind != "word" or module.lower in _KEYWORDS:
            raise syntax_error(module.text)
        if not self.accept_word("where"):
            raise syntax_error(clause="where")   # COQL needs a WHERE clause
        where = self.condition()
        order_by = self.order_by() if self.accept_word("order") else ()
        offset, limit = self.limit()
        if self.peek().kind != "end":
            raise syntax_error(self.peek().text)
        return Query(fields, module.text, where, order_by, offset, limit)

    def field_list(self) -> tuple[str, ...]:
        fields = [self.field_name()]
        while self.peek().text == ",":
            self.take()
            fields.append(self.field_name())
        if len(fields) > MAX_SELECT:
            raise ZohoError(400, "LIMIT_EXCEEDED", "select columns limit exceeded", {"limit": MAX_SELECT})
        if len(set(fields)) != len(fields):
            dup = next(f for f in fields if fields.count(f) > 1)
            raise ZohoError(400, "DUPLICATE_DATA", "duplicate select column", {"column_name": dup})
        return tuple(fields)

    def field_name(self) -> str:
        token = self.take()
        if token.kind != "word" or token.lower in _KEYWORDS:
            raise syntax_error(token.text)
        return token.text

    def condition(self) -> Condition:
        """One criterion, or two joined by and/or. A third needs its own parentheses, as in Zoho:
        ``((A and B) and C)``, never ``A and B and C``."""
        left = self.term()
        if self.peek().lower in ("and", "or"):
            operator = self.take().lower
            right = self.term()
            if self.peek().lower in ("and", "or"):
                raise syntax_error(self.peek().text)
            return Logical(operator, left, right)
        return left

    def term(self) -> Condition:
        if self.peek().text == "(":
            self.take()
            inner = self.condition()
            if self.take().text != ")":
                raise syntax_error(self.tokens[self.pos - 1].text)
            return inner
        return self.comparison()

    def comparison(self) -> Comparison:
        self.criteria += 1
        if self.criteria > MAX_CRITERIA:
            raise ZohoError(400, "LIMIT_EXCEEDED", "criteria limit exceeded", {"limit": MAX_CRITERIA})
        name = self.field_name()
        token = self.take()
        if token.kind == "op":
            return Comparison(name, "!=" if token.text == "<>" else token.text, (self.value(),))
        negate = token.lower == "not"
        if negate:
            token = self.take()
        word = token.lower
        if word == "is":
            nots = self.accept_word("not")
            self.expect_word("null")
            return Comparison(name, "is not null" if nots else "is null", ())
        if word == "between":
            low = self.value()
            self.expect_word("and")
            return Comparison(name, ("not " if negate else "") + "between", (low, self.value()))
        if word == "in":
            return Comparison(name, ("not " if negate else "") + "in", tuple(self.value_list()))
        if word == "like":
            return Comparison(name, ("not " if negate else "") + "like", (self.value(),))
        raise syntax_error(token.text)

    def value(self) -> Any:
        token = self.take()
        if token.kind == "string":
            return token.text[1:-1].replace("''", "'").replace("\\'", "'")
        if token.kind == "number":
            return float(token.text) if "." in token.text else int(token.text)
        if token.lower in ("true", "false"):
            return token.lower == "true"
        if token.lower == "null":
            return None
        raise syntax_error(token.text)

    def value_list(self) -> list[Any]:
        if self.take().text != "(":
            raise syntax_error(self.tokens[self.pos - 1].text)
        values = [self.value()]
        while self.peek().text == ",":
            self.take()
            values.append(self.value())
        if self.take().text != ")":
            raise syntax_error(self.tokens[self.pos - 1].text)
        if len(values) > 50:
            raise ZohoError(400, "LIMIT_EXCEEDED", "in clause values limit exceeded", {"limit": 50})
        return values

    def order_by(self) -> tuple[tuple[str, bool], ...]:
        self.expect_word("by")
        order = []
        while True:
            name = self.field_name()
            descending = False
            if self.peek().lower in ("asc", "desc"):
                descending = self.take().lower == "desc"
            order.append((name, descending))
            if self.peek().text != ",":
                break
            self.take()
        names = [n for n, _ in order]
        if len(set(names)) != len(names):
            raise ZohoError(400, "DUPLICATE_DATA", "duplicate order by column", {"column_name": names[0]})
        if len(order) > 10:
            raise ZohoError(400, "LIMIT_EXCEEDED", "order by limit exceeded", {"limit": 10})
        return tuple(order)

    def limit(self) -> tuple[int, int]:
        offset, limit = 0, DEFAULT_LIMIT
        if self.accept_word("limit"):
            first = self.integer("limit")
            if self.peek().text == ",":            # limit offset, count
                self.take()
                offset, limit = first, self.integer("limit")
            else:
                limit = first
        if self.accept_word("offset"):
            offset = self.integer("offset")
        if limit <= 0:
            raise ZohoError(400, "INVALID_DATA", "limit should be greater than 0")
        if limit > MAX_LIMIT:
            raise ZohoError(400, "LIMIT_EXCEEDED", "limit exceeded", {"limit": MAX_LIMIT, "by": "limit"})
        if offset + limit > MAX_REACH:
            raise ZohoError(400, "LIMIT_EXCEEDED", "limit exceeded", {"limit": MAX_REACH, "by": "offset"})
        return offset, limit

    def integer(self, what: str) -> int:
        token = self.take()
        if token.kind != "number" or "." in token.text:
            raise ZohoError(400, "INVALID_QUERY", f"{what} given seems to be invalid", {what: token.text})
        return int(token.text)


def parse(query: str) -> Query:
    return Parser(query).parse()


# -- evaluation -----------------------------------------------------------------------------------------------

DATETIME_FIELDS = {"Created_Time", "Modified_Time", "Last_Activity_Time"}


def field_value(record: dict[str, Any], name: str) -> Any:
    """A field's value for comparisons: lookups compare by id, ``Lookup.Field`` reads the stored name/id."""
    head, _, tail = name.partition(".")
    value = record.get(head)
    if isinstance(value, dict):
        if tail:
            return value.get("id" if tail == "id" else "name")
        return value.get("id")
    return value


def _comparable(name: str, value: Any, literal: Any) -> tuple[Any, Any]:
    """Coerce both sides to one type: ids and numbers as numbers, datetimes as aware datetimes, text case-free."""
    if value is None or literal is None:
        return value, literal
    if name == "id" or name.endswith(".id") or isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return _number(value), _number(literal)
        except (TypeError, ValueError, ArithmeticError):
            raise ZohoError(400, "INVALID_QUERY", "value given seems to be invalid for the column",
                            {"column_name": name}) from None
    if name in DATETIME_FIELDS:
        try:
            moment = _datetime(str(literal))
            if moment.tzinfo is None:  # Zoho wants the offset in datetime criteria
                raise ValueError(literal)
            return _datetime(str(value)), moment
        except ValueError:
            raise ZohoError(400, "INVALID_QUERY", "value given seems to be invalid for the column",
                            {"column_name": name}) from None
    if isinstance(value, str) and isinstance(literal, str):
        return value.lower(), literal.lower()
    return value, literal


@functools.lru_cache(maxsize=65_536)
def _datetime(text: str) -> datetime:
    """Parsed once per distinct text: a query compares every record's stamp, and stamps repeat (a Bulk Write
    job stamps thousands of records within a few seconds)."""
    return datetime.fromisoformat(text)


def _number(value: Any) -> Decimal:
    """Exact numbers: 19-digit record ids do not survive a trip through float."""
    return Decimal(str(value).strip())


def _like(value: Any, pattern: str) -> bool:
    if value is None:
        return False
    regex = "^" + ".*".join(re.escape(part) for part in pattern.lower().split("%")) + "$"
    return re.match(regex, str(value).lower()) is not None


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: a == b, "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b, ">=": lambda a, b: a >= b, "<": lambda a, b: a < b, "<=": lambda a, b: a <= b,
}


def matches(record: dict[str, Any], condition: Condition) -> bool:
    if isinstance(condition, Logical):
        left = matches(record, condition.left)
        if condition.operator == "and":
            return left and matches(record, condition.right)
        return left or matches(record, condition.right)
    name, op, values = condition.field, condition.operator, condition.values
    raw = field_value(record, name)
    if op == "is null":
        return raw in (None, "", [])
    if op == "is not null":
        return raw not in (None, "", [])
    if op.endswith("like"):
        return _like(raw, str(values[0])) != op.startswith("not")
    if raw is None:
        return op in ("!=", "not in", "not between")
    if op.endswith("in"):
        hit = any(_COMPARE["="](*_comparable(name, raw, v)) for v in values)
        return hit != op.startswith("not")
    if op.endswith("between"):
        low = _comparable(name, raw, values[0])
        high = _comparable(name, raw, values[1])
        inside = low[0] >= low[1] and high[0] <= high[1]
        return inside != op.startswith("not")
    left, right = _comparable(name, raw, values[0])
    try:
        return _COMPARE[op](left, right)
    except TypeError:
        raise ZohoError(400, "INVALID_QUERY", "Invalid query formed",
                        {"reason": "invalid operator found", "column_name": name, "operator": op}) from None


def check_literals(condition: Condition) -> None:
    """Reject bad datetime values up front, as Zoho does even when no record would be compared."""
    if isinstance(condition, Logical):
        check_literals(condition.left)
        check_literals(condition.right)
    elif condition.field in DATETIME_FIELDS:
        for literal in condition.values:
            if literal is not None:
                _comparable(condition.field, "1970-01-01T00:00:00+00:00", literal)


def sort_key(name: str) -> Callable[[dict[str, Any]], Any]:
    """Sort key with nulls first, ids numeric, datetimes by instant, text case-free."""
    def key(record: dict[str, Any]) -> Any:
        value = field_value(record, name)
        if value is None:
            return (0, 0)
        if name == "id":
            return (1, int(value))
        if name in DATETIME_FIELDS:
            return (1, _datetime(value).timestamp())
        if isinstance(value, (int, float)):
            return (1, value)
        return (2, str(value).lower())
    return key


def order(records: list[dict[str, Any]], order_by: tuple[tuple[str, bool], ...]) -> list[dict[str, Any]]:
    """Stable multi-key sort: apply keys from last to first. Zoho's default order is id ascending."""
    ordered = sorted(records, key=sort_key("id"))
    for name, descending in reversed(order_by or (("id", False),)):
        ordered.sort(key=sort_key(name), reverse=descending)
    return ordered


def credits_for(limit: int) -> int:
    """COQL credits by LIMIT: 1-200 -> 1, 201-1000 -> 2, 1001-2000 -> 3."""
    return 1 if limit <= 200 else 2 if limit <= 1000 else 3


def project(record: dict[str, Any], fields: tuple[str, ...], line_items: str | None) -> dict[str, Any]:
    """The selected columns plus ``id``; lookups come back as ``{"id": ...}``, subforms never."""
    out: dict[str, Any] = {}
    for name in fields:
        if name == line_items:
            continue
        head, _, tail = name.partition(".")
        value = record.get(head)
        if isinstance(value, dict) and not tail:
            value = {"id": value.get("id")}
        elif isinstance(value, dict):
            value = field_value(record, name)
        out[name] = value
    out["id"] = record["id"]
    return out
