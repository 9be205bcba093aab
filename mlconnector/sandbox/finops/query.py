"""OData query options as F&O applies them: the $filter subset of odata.md (eq ne gt ge lt le, and or not,
wildcards in string equality, enum literals ``Microsoft.Dynamics.DataEntities.NoYes'Yes'``), $orderby, $select,
$top, $skip, $count, entity keys in URLs, and server-driven paging (at most 10,000 rows, opaque nextLink)."""

from __future__ import annotations

import base64
import fnmatch
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import urlencode

from .entities import ENUM_NAMESPACE, ENUMS, EntitySpec
from .errors import ODataError, bad_request

Row = dict[str, Any]
Predicate = Callable[[Row], bool]
MAX_PAGE_SIZE = 10_000

_TOKEN_RE = re.compile(r"""
    (?P<ws>\s+)
  | (?P<enum>Microsoft\.Dynamics\.DataEntities\.(?P<enum_type>\w+)'(?P<enum_value>(?:[^']|'')*)')
  | (?P<string>'(?:[^']|'')*')
  | (?P<datetime>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:\d{2}))
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<punct>[(),])
""", re.VERBOSE)
_OPS = {"eq", "ne", "gt", "ge", "lt", "le"}
_EDM = {"string": "Edm.String", "decimal": "Edm.Decimal", "int": "Edm.Int64", "datetime": "Edm.DateTimeOffset"}


def parse_datetime(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


@dataclass
class _Literal:
    kind: str          # string | enum | datetime | number | boolean | null
    value: Any
    enum_type: str | None = None


class FilterParser:
    """Recursive descent over the F&O $filter subset; produces a predicate over rows."""

    def __init__(self, text: str, spec: EntitySpec) -> None:
        self.text = text
        self.spec = spec
        self.tokens: list[tuple[str, re.Match[str]]] = []
        pos = 0
        while pos < len(text):
            match = _TOKEN_RE.match(text, pos)
            if not match:
                raise bad_request(f"Syntax error at position {pos} in '{text}'.")
            pos = match.end()
            if match.lastgroup != "ws":
                kind = "enum" if match.group("enum") else str(match.lastgroup)
                self.tokens.append((kind, match))
        self.pos = 0

    def parse(self) -> Predicate:
        predicate = self._or()
        if self.pos != len(self.tokens):
            raise bad_request(f"Syntax error at position {self.pos} in '{self.text}'.")
        return predicate

    def _peek(self) -> tuple[str, str] | None:
        if self.pos >= len(self.tokens):
            return None
        kind, match = self.tokens[self.pos]
        return kind, match.group()

    def _take(self) -> tuple[str, re.Match[str]]:
        if self.pos >= len(self.tokens):
            raise bad_request(f"Syntax error: expression expected at the end of '{self.text}'.")
        self.pos += 1
        return self.tokens[self.pos - 1]

    def _word(self, word: str) -> bool:
        return self._peek() == ("ident", word)

    def _or(self) -> Predicate:
        left = self._and()
        while self._word("or"):
            self._take()
            right = self._and()
            left = (lambda a, b: lambda row: a(row) or b(row))(left, right)
        return left

    def _and(self) -> Predicate:
        left = self._unary()
        while self._word("and"):
            self._take()
            right = self._unary()
            left = (lambda a, b: lambda row: a(row) and b(row))(left, right)
        return left

    def _unary(self) -> Predicate:
        if self._word("not"):
            self._take()
            inner = self._unary()
            return lambda row: not inner(row)
        if self._peek() == ("punct", "("):
            self._take()
            inner = self._or()
            if self._peek() != ("punct", ")"):
                raise bad_request(f"Syntax error: ')' expected in '{self.text}'.")
            self._take()
            return inner
        return self._comparison()

    def _comparison(self) -> Predicate:
        kind, match = self._take()
        name = match.group()
        if kind != "ident":
            raise bad_request(f"Syntax error: a property name was expected in '{self.text}'.")
        if self._peek() == ("punct", "("):
            # odata.md: functions such as contains() are not supported; use a wildcard in eq instead.
            raise bad_request(f"The query function '{name}' is not supported.")
        field_type = self.spec.type_of(name)
        if field_type is None:
            raise bad_request(f"Could not find a property named '{name}' on type "
                              f"'{ENUM_NAMESPACE}.{self.spec.type_name}'.")
        op_kind, op_match = self._take()
        op = op_match.group()
        if op_kind != "ident" or op not in _OPS:
            if op in ("has", "in"):
                raise bad_request(f"The operator '{op}' is not supported.")
            raise bad_request(f"Syntax error: unknown operator '{op}' in '{self.text}'.")
        literal = self._literal()
        return self._compare(name, field_type, op, literal)

    def _literal(self) -> _Literal:
        kind, match = self._take()
        if kind == "string":
            return _Literal("string", match.group()[1:-1].replace("''", "'"))
        if kind == "enum":
            return _Literal("enum", match.group("enum_value").replace("''", "'"), match.group("enum_type"))
        if kind == "datetime":
            return _Literal("datetime", parse_datetime(match.group()))
        if kind == "number":
            return _Literal("number", float(match.group()))
        if kind == "ident" and match.group() in ("true", "false"):
            return _Literal("boolean", match.group() == "true")
        if kind == "ident" and match.group() == "null":
            return _Literal("null", None)
        raise bad_request(f"Syntax error: a literal was expected in '{self.text}'.")

    def _compare(self, name: str, field_type: str, op: str, literal: _Literal) -> Predicate:
        if literal.kind == "null":
            return lambda row: (row.get(name) in (None, "")) == (op == "eq")
        if field_type.startswith("enum:"):
            return self._compare_enum(name, field_type[5:], op, literal)
        accepted = {"string": "string", "decimal": "number", "int": "number", "datetime": "datetime"}[field_type]
        if literal.kind != accepted:
            found = {"string": "Edm.String", "number": "Edm.Decimal", "datetime": "Edm.DateTimeOffset",
                     "enum": f"{ENUM_NAMESPACE}.{literal.enum_type}", "boolean": "Edm.Boolean"}[literal.kind]
            raise bad_request("A binary operator with incompatible types was detected. Found operand types "
                              f"'{_EDM[field_type]}' and '{found}' for operator kind '{op}'.")
        if field_type == "string" and op in ("eq", "ne") and "*" in literal.value:
            pattern = literal.value.lower()
            matches = lambda row: fnmatch.fnmatchcase(str(row.get(name) or "").lower(), pattern)  # noqa: E731
            return matches if op == "eq" else (lambda row: not matches(row))
        target = _normal(field_type, literal.value)
        compare = _COMPARE[op]

        def predicate(row: Row) -> bool:
            value = _normal(field_type, row.get(name))
            if value is None:
                return op == "ne"
            return compare(value, target)
        return predicate

    def _compare_enum(self, name: str, enum_type: str, op: str, literal: _Literal) -> Predicate:
        if literal.kind != "enum":
            raise bad_request("A binary operator with incompatible types was detected. Found operand types "
                              f"'{ENUM_NAMESPACE}.{enum_type}' and 'Edm.String' for operator kind '{op}'. "
                              f"Write enum values as {ENUM_NAMESPACE}.{enum_type}'Value'.")
        if literal.enum_type != enum_type or literal.value not in ENUMS[enum_type]:
            raise bad_request(f"The enum value '{literal.enum_type}'{literal.value}'' is not valid for "
                              f"property '{name}' of type '{ENUM_NAMESPACE}.{enum_type}'.")
        if op not in ("eq", "ne"):
            raise bad_request(f"The operator '{op}' is not supported for enum properties.")
        wanted = literal.value
        return (lambda row: row.get(name) == wanted) if op == "eq" else (lambda row: row.get(name) != wanted)


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda a, b: a == b, "ne": lambda a, b: a != b, "gt": lambda a, b: a > b,
    "ge": lambda a, b: a >= b, "lt": lambda a, b: a < b, "le": lambda a, b: a <= b}


def _normal(field_type: str, value: Any) -> Any:
    if value is None or value == "" and field_type != "string":
        return None
    if field_type == "datetime":
        return parse_datetime(value) if isinstance(value, str) else value
    if field_type in ("decimal", "int"):
        return float(value)
    return str(value).lower()  # SQL Server's case-insensitive collation


@dataclass
class Query:
    filter: Predicate | None = None
    orderby: list[tuple[str, bool]] = field(default_factory=list)
    select: list[str] | None = None
    top: int | None = None
    skip: int = 0
    skiptoken: str | None = None
    count: bool = False
    cross_company: bool = False
    raw: dict[str, str] = field(default_factory=dict)


def _int_option(params: dict[str, str], name: str) -> int | None:
    if name not in params:
        return None
    if not params[name].isdigit():
        raise bad_request(f"Invalid value '{params[name]}' for {name} query option found.")
    return int(params[name])


def parse_query(params: dict[str, str], spec: EntitySpec) -> Query:
    query = Query(raw={k: v for k, v in params.items() if k.startswith("$") or k == "cross-company"})
    query.cross_company = params.get("cross-company", "").lower() == "true"
    if params.get("$filter"):
        query.filter = FilterParser(params["$filter"], spec).parse()
    for part in filter(None, (p.strip() for p in params.get("$orderby", "").split(","))):
        name, _, direction = part.partition(" ")
        if spec.type_of(name) is None:
            raise bad_request(f"Could not find a property named '{name}' on type "
                              f"'{ENUM_NAMESPACE}.{spec.type_name}'.")
        query.orderby.append((name, direction.strip() == "desc"))
    if "$select" in params:
        query.select = [s.strip() for s in params["$select"].split(",") if s.strip()]
    if "$expand" in params:
        raise bad_request(f"Navigation property '{params['$expand']}' is not defined on "
                          f"'{ENUM_NAMESPACE}.{spec.type_name}' in this sandbox.")
    query.top = _int_option(params, "$top")
    query.skip = _int_option(params, "$skip") or 0
    query.skiptoken = params.get("$skiptoken")
    query.count = params.get("$count", "").lower() == "true"
    return query


def requested_page_size(prefer: str | None) -> int:
    match = re.search(r"odata\.maxpagesize\s*=\s*(\d+)", prefer or "")
    return max(1, min(int(match.group(1)), MAX_PAGE_SIZE)) if match else MAX_PAGE_SIZE


def _sort_value(value: Any, field_type: str) -> tuple[int, Any]:
    normal = _normal(field_type, value)
    if normal is None:
        return (0, "")
    return (1, normal.timestamp() if isinstance(normal, datetime) else normal)


@dataclass
class Page:
    rows: list[Row]
    next_token: str | None
    count: int


def select_page(rows: list[Row], query: Query, spec: EntitySpec, page_size: int) -> Page:
    """Filter, order (keys break ties), cut one page; the skiptoken is the offset, opaque to clients."""
    matching = [row for row in rows if query.filter is None or query.filter(row)]
    order = [*query.orderby, *((name, False) for name in spec.keys if name not in dict(query.orderby))]
    for name, descending in reversed(order):
        matching.sort(key=lambda row: _sort_value(row.get(name), spec.type_of(name) or "string"),
                      reverse=descending)
    total = len(matching)
    offset = _decode(query.skiptoken) if query.skiptoken else 0
    matching = matching[offset + query.skip:]
    if query.top is not None:
        return Page(matching[:query.top], None, total)
    if len(matching) > page_size:
        return Page(matching[:page_size], _encode(offset + query.skip + page_size), total)
    return Page(matching, None, total)


def _encode(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"o": offset}).encode()).decode().rstrip("=")


def _decode(token: str) -> int:
    try:
        return int(json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))["o"])
    except (ValueError, KeyError, TypeError):
        raise bad_request(f"The skip token value '{token}' is invalid.") from None


_LINK_SAFE = "$,()'"


def next_link(base_url: str, query: Query, token: str) -> str:
    options = {k: v for k, v in query.raw.items() if k not in ("$skiptoken", "$skip")}
    options["$skiptoken"] = token
    return f"{base_url}?{urlencode(options, safe=_LINK_SAFE)}"


_KEY_PART_RE = re.compile(r"\s*(\w+)\s*=\s*('(?:[^']|'')*'|-?\d+(?:\.\d+)?)\s*(?:,|$)")


def parse_key(text: str, spec: EntitySpec) -> dict[str, Any]:
    """``dataAreaId='usmf',CustomerAccount='US-001'`` -> values; every key field must be given (odata.md)."""
    values: dict[str, Any] = {}
    pos = 0
    while pos < len(text):
        match = _KEY_PART_RE.match(text, pos)
        if not match:
            raise bad_request(f"The key value '({text})' is not valid for '{spec.name}'.")
        name, raw = match.group(1), match.group(2)
        values[name] = raw[1:-1].replace("''", "'") if raw.startswith("'") else float(raw)
        pos = match.end()
    if set(values) != set(spec.keys):
        raise bad_request(f"The number of keys specified in the URI does not match number of key properties "
                          f"for the resource '{ENUM_NAMESPACE}.{spec.type_name}' (keys: {', '.join(spec.keys)}).")
    return values


def apply_select(row: Row, select: list[str] | None) -> Row:
    if select is None:
        return row
    return {k: v for k, v in row.items() if k in select or k.startswith("@odata.")}


def check_value(spec: EntitySpec, name: str, value: Any) -> Any:
    """A body value as F&O would store it; enum values must be among the enum's names."""
    field_type = spec.type_of(name)
    if field_type is None:
        raise ODataError(400, f"The property '{name}' does not exist on type '{ENUM_NAMESPACE}.{spec.type_name}'. "
                              "Make sure to only use property names that are defined by the type.")
    if value is None:
        return None
    if field_type.startswith("enum:"):
        enum_type = field_type[5:]
        if value not in ENUMS[enum_type]:
            raise ODataError(400, f"The value '{value}' is not valid for '{ENUM_NAMESPACE}.{enum_type}' "
                                  f"(property '{name}').")
        return value
    if field_type in ("decimal", "int"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ODataError(400, f"Cannot convert the literal '{value}' to the expected type "
                                  f"'{_EDM[field_type]}' (property '{name}').")
        return int(value) if field_type == "int" else value
    if field_type == "datetime":
        try:
            return parse_datetime(str(value)).strftime("%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            raise ODataError(400, f"Cannot convert the literal '{value}' to the expected type "
                                  f"'Edm.DateTimeOffset' (property '{name}').") from None
    return str(value)
