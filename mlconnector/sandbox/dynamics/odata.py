"""OData v4 query options as BC applies them: $filter, $orderby, $select, $expand, $top, $skip, $count, paging.

Paging is server-driven: at most ``page_size`` rows per response (BC online: 20,000; on-prem
``ODataServicesMaxPageSize``), smaller when the client sends ``Prefer: odata.maxpagesize=N``, and the next
page is an ``@odata.nextLink`` carrying an opaque ``$skiptoken`` (the sort key of the last row, as BC uses the
last row's key). ``$top`` returns no nextLink, as in BC (microsoft/AL#6858).
"""

from __future__ import annotations

import base64
import bisect
import functools
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Iterable
from operator import itemgetter
from urllib.parse import urlencode

from .errors import ODataError, query_syntax, unknown_property

Row = dict[str, Any]
Predicate = Callable[[Row], bool]

_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<string>'(?:[^']|'')*')
  | (?P<guid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}(?![\w-]))
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2})?)
  | (?P<date>\d{4}-\d{2}-\d{2}(?![\w:]))
  | (?P<number>-?\d+(?:\.\d+)?(?:[mMdDfFlL])?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_/]*)
  | (?P<punct>[(),])
""", re.VERBOSE)

_COMPARISONS = {"eq", "ne", "gt", "ge", "lt", "le"}
_EDM = {"string": "Edm.String", "decimal": "Edm.Decimal", "integer": "Edm.Int32", "boolean": "Edm.Boolean",
        "guid": "Edm.Guid", "date": "Edm.Date", "datetime": "Edm.DateTimeOffset"}
_OP_KIND = {"eq": "Equal", "ne": "NotEqual", "gt": "GreaterThan", "ge": "GreaterThanOrEqual",
            "lt": "LessThan", "le": "LessThanOrEqual"}


@dataclass(frozen=True)
class Literal:
    kind: str      # string | guid | datetime | date | number | boolean | null
    value: Any


_NO_SECONDS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?:[+-]|$)")


@functools.lru_cache(maxsize=250_000)
def parse_datetime(text: str) -> datetime:
    """An OData DateTimeOffset literal (or BC's blank 0001-01-01T00:00:00Z) as an aware UTC datetime.
    Kept per text: a paged read filters and orders every row by its stamp again for each page."""
    value = text.replace("Z", "+00:00")
    if value[16:17] in ("", "+", "-") and _NO_SECONDS.match(value):  # hh:mm without seconds (the rare form)
        value = value[:16] + ":00" + value[16:]
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        match = _TOKEN_RE.match(text, pos)
        if not match:
            raise query_syntax(f"Syntax error at position {pos} in '{text}'.")
        pos = match.end()
        if match.lastgroup != "ws":
            out.append((match.lastgroup or "", match.group()))
    return out


def _as_is(value: Any) -> Any:
    return value


class FilterParser:
    """Recursive-descent parser of the $filter subset BC supports, producing a predicate over API rows."""

    def __init__(self, text: str, types: dict[str, str], entity: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0
        self.types = types
        self.entity = entity
        self.lower_bounds: dict[str, Any] = {}  # field -> a value every matching row is at least (see below)
        self._alternatives = False  # an 'or' or a 'not' was seen: no comparison is then certain to apply

    def parse(self) -> Predicate:
        predicate, _ = self._or()
        if self.pos != len(self.tokens):
            raise query_syntax(f"Syntax error at position {self.pos} in '{self.text}'.")
        if self._alternatives:
            self.lower_bounds = {}
        return predicate

    # -- grammar --------------------------------------------------------------------------------------------

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _take(self, value: str | None = None) -> tuple[str, str]:
        token = self._peek()
        if token is None or (value is not None and token[1] != value):
            raise query_syntax(f"Syntax error: '{value or 'expression'}' expected in '{self.text}'.")
        self.pos += 1
        return token

    def _keyword(self, word: str) -> bool:
        token = self._peek()
        return token is not None and token[0] == "ident" and token[1] == word

    def _or(self) -> tuple[Predicate, set[str]]:
        left, fields = self._and()
        while self._keyword("or"):
            self._alternatives = True
            self._take()
            right, right_fields = self._and()
            fields |= right_fields
            if len(fields) > 1:
                # odata-known-limitations.md: OR across distinct fields is rejected.
                raise ODataError(400, "BadRequest",
                                 "The 'OR' operator is not supported on distinct fields on an OData filter.")
            left = functools.partial(lambda a, b, row: a(row) or b(row), left, right)
        return left, fields

    def _and(self) -> tuple[Predicate, set[str]]:
        left, fields = self._unary()
        while self._keyword("and"):
            self._take()
            right, right_fields = self._unary()
            fields |= right_fields
            left = functools.partial(lambda a, b, row: a(row) and b(row), left, right)
        return left, fields

    def _unary(self) -> tuple[Predicate, set[str]]:
        if self._keyword("not"):
            self._alternatives = True
            self._take()
            inner, fields = self._unary()
            return (lambda row: not inner(row)), fields
        if self._peek() == ("punct", "("):
            self._take("(")
            inner, fields = self._or()
            self._take(")")
            return inner, fields
        return self._comparison()

    def _comparison(self) -> tuple[Predicate, set[str]]:
        token = self._peek()
        if token and token[0] == "ident" and token[1] in ("startswith", "endswith", "contains"):
            return self._string_function()
        name, transform = self._field_operand()
        op = self._take()[1]
        if op not in _COMPARISONS:
            raise query_syntax(f"Syntax error: unknown operator '{op}' in '{self.text}'.")
        literal = self._literal()
        predicate = self._compare(name, transform, op, literal)
        kind = self.types[name]
        if op in ("ge", "gt") and kind in ("datetime", "date") and literal.kind != "null" and transform is _as_is:
            # Only conjunctions reach the end with this kept (parse drops it after an 'or' or a 'not'): every row
            # the filter matches then has this field at or above the literal.
            bound = self._coerce(name, kind, op, literal)
            self.lower_bounds[name] = max(bound, self.lower_bounds.get(name, bound))
        return predicate, {name}

    def _field_operand(self) -> tuple[str, Callable[[Any], Any]]:
        kind, text = self._take()
        if kind != "ident":
            raise query_syntax(f"Syntax error: a property name was expected in '{self.text}'.")
        if text in ("tolower", "toupper"):
            self._take("(")
            name, _ = self._field_operand()
            self._take(")")
            return name, (str.lower if text == "tolower" else str.upper)
        if text not in self.types:
            raise unknown_property(text, self.entity)
        return text, _as_is

    def _string_function(self) -> tuple[Predicate, set[str]]:
        func = self._take()[1]
        self._take("(")
        name, transform = self._field_operand()
        self._take(",")
        literal = self._literal()
        self._take(")")
        if literal.kind != "string":
            raise query_syntax(f"Syntax error: {func} expects a string in '{self.text}'.")
        needle = literal.value.lower()
        test = {"startswith": str.startswith, "endswith": str.endswith,
                "contains": lambda hay, sub: sub in hay}[func]
        return (lambda row: test(str(transform(row.get(name) or "")).lower(), needle)), {name}

    def _literal(self) -> Literal:
        kind, text = self._take()
        if kind == "string":
            return Literal("string", text[1:-1].replace("''", "'"))
        if kind in ("guid", "datetime", "date"):
            return Literal(kind, text)
        if kind == "number":
            return Literal("number", float(text.rstrip("mMdDfFlL")))
        if kind == "ident" and text in ("true", "false"):
            return Literal("boolean", text == "true")
        if kind == "ident" and text == "null":
            return Literal("null", None)
        raise query_syntax(f"Syntax error: a literal was expected in '{self.text}'.")

    # -- evaluation -----------------------------------------------------------------------------------------

    def _compare(self, name: str, transform: Callable[[Any], Any], op: str, literal: Literal) -> Predicate:
        kind = self.types[name]
        target = self._coerce(name, kind, op, literal)
        normalise = _normaliser(kind)
        compare = {"eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "gt": lambda a, b: a > b,
                   "ge": lambda a, b: a >= b, "lt": lambda a, b: a < b, "le": lambda a, b: a <= b}[op]

        def predicate(row: Row) -> bool:
            value = normalise(transform(row.get(name)))
            if target is None or value is None:
                return compare(value is None, target is None) if op in ("eq", "ne") else False
            return compare(value, target)
        return predicate

    def _coerce(self, name: str, kind: str, op: str, literal: Literal) -> Any:
        if literal.kind == "null":
            return None
        accepted = {"string": {"string"}, "decimal": {"number"}, "integer": {"number"},
                    "boolean": {"boolean"}, "guid": {"guid"}, "date": {"date"},
                    "datetime": {"datetime", "date"}}[kind]
        # Enum properties (blocked, status, type...) are strings on the wire and take quoted literals.
        if literal.kind not in accepted:
            found = {"string": "Edm.String", "number": "Edm.Int32", "boolean": "Edm.Boolean", "guid": "Edm.Guid",
                     "date": "Edm.Date", "datetime": "Edm.DateTimeOffset"}[literal.kind]
            raise ODataError(400, "BadRequest",
                             "A binary operator with incompatible types was detected. Found operand types "
                             f"'{_EDM[kind]}' and '{found}' for operator kind '{_OP_KIND[op]}'.")
        return _normaliser(kind)(literal.value)


def _normaliser(kind: str) -> Callable[[Any], Any]:
    """Maps a stored value or literal to something comparable; string comparison follows SQL's CI collation."""
    def norm(value: Any) -> Any:
        if value is None:
            return None
        if kind == "datetime":
            return parse_datetime(value) if isinstance(value, str) else value
        if kind in ("decimal", "integer"):
            return float(value)
        if kind == "boolean":
            return bool(value)
        if kind in ("guid", "string"):
            return str(value).lower()
        return str(value)
    return norm


# ---------------------------------------------------------------------------------------------------------------

@dataclass
class Query:
    """The parsed system query options of one request."""

    filter: Predicate | None = None
    orderby: list[tuple[str, bool]] = field(default_factory=list)   # (property, descending)
    select: list[str] | None = None
    expand: dict[str, list[str] | None] = field(default_factory=dict)  # navigation -> nested $select
    top: int | None = None
    skip: int = 0
    skiptoken: str | None = None
    count: bool = False
    raw: dict[str, str] = field(default_factory=dict)
    # field -> a lower bound every row the filter matches respects (from a conjunction such as
    # "lastModifiedDateTime ge X and ..."): lets a table skip rows by an index before filtering, as a server does.
    lower_bounds: dict[str, Any] = field(default_factory=dict)


def _int_option(params: dict[str, str], name: str) -> int | None:
    if name not in params:
        return None
    try:
        value = int(params[name])
    except ValueError:
        raise query_syntax(f"Invalid value '{params[name]}' for {name} query option found.") from None
    if value < 0:
        raise query_syntax(f"Invalid value '{params[name]}' for {name} query option found.")
    return value


def _split_top_level(text: str) -> list[str]:
    """Splits "a,b($select=x,y),c" on commas outside parentheses."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
            continue
        depth += char == "("
        depth -= char == ")"
        current += char
    if current.strip():
        parts.append(current.strip())
    return parts


def parse_query(params: dict[str, str], types: dict[str, str], entity: str,
                navigations: Iterable[str] = ()) -> Query:
    query = Query(raw={k: v for k, v in params.items() if k.startswith("$")})
    if params.get("$filter"):
        parser = FilterParser(params["$filter"], types, entity)
        query.filter = parser.parse()
        query.lower_bounds = parser.lower_bounds
    for part in filter(None, (p.strip() for p in params.get("$orderby", "").split(","))):
        name, _, direction = part.partition(" ")
        if name not in types:
            raise unknown_property(name, entity)
        if direction.strip() not in ("", "asc", "desc"):
            raise query_syntax(f"Syntax error in $orderby '{params['$orderby']}'.")
        query.orderby.append((name, direction.strip() == "desc"))
    if "$select" in params:
        query.select = [s.strip() for s in params["$select"].split(",") if s.strip()]
        for name in query.select:
            if name not in types and name not in navigations:
                raise unknown_property(name, entity)
    navigations = set(navigations)
    for part in _split_top_level(params.get("$expand", "")):
        name, _, options = part.partition("(")
        if name not in navigations:
            raise unknown_property(name, entity)
        nested = re.search(r"\$select=([^;)]*)", options)
        query.expand[name] = [s.strip() for s in nested.group(1).split(",")] if nested else None
    query.top = _int_option(params, "$top")
    query.skip = _int_option(params, "$skip") or 0
    query.skiptoken = params.get("$skiptoken")
    query.count = params.get("$count", "").lower() == "true"
    return query


def requested_page_size(prefer: str | None, server_max: int) -> tuple[int, bool]:
    """The page size for this request and whether odata.maxpagesize was honoured (Preference-Applied)."""
    match = re.search(r"odata\.maxpagesize\s*=\s*(\d+)", prefer or "")
    if not match:
        return server_max, False
    return max(1, min(int(match.group(1)), server_max)), True


def _sort_text(value: Any) -> tuple[int, Any]:
    return (0, "") if value is None else (1, str(value).lower())


def _sort_number(value: Any) -> tuple[int, Any]:
    return (0, "") if value is None else (1, float(value))


def _sort_boolean(value: Any) -> tuple[int, Any]:
    return (0, "") if value is None else (1, int(bool(value)))


def _sort_moment(value: Any) -> tuple[int, Any]:
    if value is None:
        return (0, "")
    return (1, parse_datetime(value).timestamp() if isinstance(value, str) else value.timestamp())


# A value's sort key by the field's kind (None first); an order picks its functions once, not for every value.
_SORT_VALUES: dict[str, Callable[[Any], tuple[int, Any]]] = {
    "decimal": _sort_number, "integer": _sort_number, "boolean": _sort_boolean, "datetime": _sort_moment}


def _sort_value(value: Any, kind: str) -> tuple[int, Any]:
    return _SORT_VALUES.get(kind, _sort_text)(value)


def _compare_keys(a: list, b: list, directions: list[bool]) -> int:
    for left, right, descending in zip(a, b, directions):
        if left != right:
            result = -1 if tuple(left) < tuple(right) else 1
            return -result if descending else result
    return 0


def encode_skiptoken(key: list) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode().rstrip("=")


def decode_skiptoken(token: str) -> list:
    try:
        return json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
    except ValueError:
        raise query_syntax(f"The skip token value '{token}' is invalid.") from None


@dataclass
class Page:
    rows: list[Row]
    next_token: str | None
    count: int


def select_page(rows: list[Any], query: Query, types: dict[str, str], key_fields: list[str], page_size: int, *,
                view: Callable[[Any], Row] | None = None,
                field_of: Callable[[str], Callable[[Any], Any] | None] | None = None,
                index: Callable[[tuple, Callable[[], list[tuple[tuple, Any]]]], list[tuple[tuple, Any]]] | None = None
                ) -> Page:
    """Filters, orders and cuts one page; the key fields break ties so the skiptoken is unambiguous.

    ``rows`` may be stored rows that ``view`` turns into what the client sees (filtered and returned), and
    ``field_of(name)`` a function reading that field's value from a stored row as its view would show it (None
    where the view computes it). With both, and an ascending order (what clients paging by modified time ask),
    the rows are ordered by their stored values and only the rows up to the end of the page are viewed and
    filtered, as a server reads a key's index: a large table read in pages costs each request a sort, not a
    conversion of every row. ``index(order, build)`` then gives the rows sorted by their keys as kept by the
    caller (OrderIndex), built by ``build`` when a row was written since."""
    order = [*query.orderby, *((name, False) for name in key_fields if name not in dict(query.orderby))]
    directions = [descending for _, descending in order]
    kinds = [(name, types.get(name, "string")) for name, _ in order]
    see: Callable[[Any], Row] = view or (lambda row: row)

    def key_of(row: Row) -> list:
        return [list(_sort_value(row.get(name), kind)) for name, kind in kinds]

    if any(directions):
        matching = [row for row in map(see, rows) if query.filter is None or query.filter(row)]
        matching.sort(key=functools.cmp_to_key(lambda a, b: _compare_keys(key_of(a), key_of(b), directions)))
        total = len(matching)
        if query.skiptoken:
            after = decode_skiptoken(query.skiptoken)
            matching = [row for row in matching if _compare_keys(key_of(row), after, directions) > 0]
        matching = matching[query.skip:]
        if query.top is not None:
            return Page(matching[:query.top], None, total)
        if len(matching) > page_size:
            page = matching[:page_size]
            return Page(page, encode_skiptoken(key_of(page[-1])), total)
        return Page(matching, None, total)

    # All ascending: each row's key is computed once, not at every comparison, and rows at or before the
    # skiptoken are dropped before sorting; the order and the cut are the same as _compare_keys gives.
    getters = [(field_of(name), kind) for name, kind in kinds] if view is not None and field_of is not None else []
    lazy = bool(getters) and all(get is not None for get, _ in getters)
    wanted = query.skip + (query.top if query.top is not None else page_size + 1)
    taken: list[tuple[tuple, Row]] = []
    if lazy:
        parts = [(get, _SORT_VALUES.get(kind, _sort_text)) for get, kind in getters]

        def ordered_rows() -> list[tuple[tuple, Any]]:
            keyed = [(tuple([value(get(row)) for get, value in parts]), row) for row in rows]  # type: ignore[misc]
            keyed.sort(key=_first)  # keys are unique (the key fields end them)
            return keyed

        ordered = index(tuple(kinds), ordered_rows) if index is not None else ordered_rows()
        start = 0
        if query.skiptoken:
            after = tuple(tuple(part) for part in decode_skiptoken(query.skiptoken))
            start = bisect.bisect_right(ordered, after, key=_first)
        for at in range(start, len(ordered)):
            key, stored = ordered[at]
            row = see(stored)
            if query.filter is not None and not query.filter(row):
                continue
            taken.append((key, row))
            if len(taken) >= wanted:
                break
        total = -1
    else:
        candidates = [row for row in map(see, rows) if query.filter is None or query.filter(row)]
        keyed = [(tuple([_sort_value(row.get(name), kind) for name, kind in kinds]), i)
                 for i, row in enumerate(candidates)]
        total = len(keyed)
        if query.skiptoken:
            after = tuple(tuple(part) for part in decode_skiptoken(query.skiptoken))
            keyed = [pair for pair in keyed if pair[0] > after]
        keyed.sort()
        taken = [(key, candidates[i]) for key, i in keyed[:wanted]]
    if lazy and query.count:
        total = sum(1 for row in map(see, rows) if query.filter is None or query.filter(row))
    taken = taken[query.skip:]
    if query.top is not None:
        return Page([row for _, row in taken[:query.top]], None, total)
    if len(taken) > page_size:
        return Page([row for _, row in taken[:page_size]], encode_skiptoken(taken[page_size - 1][0]), total)
    return Page([row for _, row in taken], None, total)


_LINK_SAFE = "$,'()"
_first = itemgetter(0)


def next_link(base_url: str, query: Query, token: str) -> str:
    """The nextLink repeats the request's own query options plus $skiptoken, like BC's."""
    options = {k: v for k, v in query.raw.items() if k not in ("$skiptoken", "$skip")}
    options["$skiptoken"] = token
    return f"{base_url}?{urlencode(options, safe=_LINK_SAFE)}"


def apply_select(row: Row, select: list[str] | None, keep: Iterable[str] = ()) -> Row:
    if select is None:
        return row
    wanted = set(select) | set(keep)
    return {k: v for k, v in row.items() if k in wanted or k.startswith("@odata.")}
