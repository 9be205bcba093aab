"""Search Records: ``GET /crm/v8/{module}/search`` with ``criteria``, ``email``, ``phone`` or ``word``
(https://www.zoho.com/crm/developer/docs/api/v8/search-records.html).

Criteria are ``(Field:operator:value)`` joined by ``and``/``or`` in parentheses, at most 10; values escape ``(``,
``)``, ``,`` and ``\\`` with a backslash. Operators: equals, not_equal, starts_with, in, greater_than,
greater_equal, less_than, less_equal, between. Text compares without regard to case, as Zoho's search does.
Nothing found answers 204, as the page says (the v8 OAS documents only 200). ``email`` searches the module's email
fields, ``phone`` its phone fields, ``word`` every text field (a contains match). Records come with every field
(``fields`` narrows them), line items left out, 200 to a page (``page``, ``per_page``), up to 2,000 in all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from mlconnector.sandbox.common import JSONResponse

from .errors import ZohoError

MAX_CRITERIA = 10
MAX_PER_PAGE = 200
MAX_RESULTS = 2000
OPERATORS = ("equals", "not_equal", "starts_with", "in", "greater_than", "greater_equal", "less_than", "less_equal",
             "between")


@dataclass(frozen=True)
class Condition:
    field: str
    operator: str
    values: tuple[str, ...]


def _invalid(message: str = "invalid query formed") -> ZohoError:
    return ZohoError(400, "INVALID_QUERY", message, {"reason": "invalid criteria", "api_name": "criteria"})


def _split_unescaped(text: str, separator: str) -> list[str]:
    parts, current, escaped = [], [], False
    for ch in text:
        if escaped:
            current.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == separator:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


class _Parser:
    """criteria := group ; group := '(' (condition | group (('and'|'or') group)*) ')'"""

    def __init__(self, text: str) -> None:
        self.text = text.strip()
        self.pos = 0
        self.count = 0

    def parse(self) -> Any:
        tree = self._group()
        if self.pos != len(self.text):
            raise _invalid()
        return tree

    def _group(self) -> Any:
        if self.pos >= len(self.text) or self.text[self.pos] != "(":
            raise _invalid()
        if self.text.startswith("((", self.pos):
            self.pos += 1
            node: Any = self._group()
            while True:
                rest = self.text[self.pos:]
                low = rest.lower()
                if low.startswith("and(") or low.startswith("and ("):
                    joiner = "and"
                elif low.startswith("or(") or low.startswith("or ("):
                    joiner = "or"
                else:
                    break
                self.pos += len(joiner)
                while self.text[self.pos] == " ":
                    self.pos += 1
                node = (joiner, node, self._group())
            if self.pos >= len(self.text) or self.text[self.pos] != ")":
                raise _invalid()
            self.pos += 1
            return node
        end, escaped = self.pos + 1, False
        while end < len(self.text):
            ch = self.text[end]
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == ")":
                break
            end += 1
        else:
            raise _invalid()
        body = self.text[self.pos + 1:end]
        self.pos = end + 1
        self.count += 1
        if self.count > MAX_CRITERIA:
            raise ZohoError(400, "LIMIT_EXCEEDED", "criteria limit exceeded", {"limit": MAX_CRITERIA})
        field, _, rest = body.partition(":")
        operator, _, value = rest.partition(":")
        if not field or operator not in OPERATORS:
            raise _invalid()
        values = tuple(_split_unescaped(value, ",")) if operator in ("in", "between") else \
            ("".join(_split_unescaped(value, "\0")),)
        return Condition(field.strip(), operator, values)


def _compare(actual: Any, operator: str, values: tuple[str, ...]) -> bool:
    if isinstance(actual, dict):  # a lookup compares by its id or name
        return any(_compare(actual.get(k), operator, values) for k in ("id", "name"))
    if actual is None:
        return operator == "not_equal"
    if isinstance(actual, (int, float)) and not isinstance(actual, bool):
        try:
            number, others = float(values[0]), [float(v) for v in values]
        except ValueError:
            return False
        return {"equals": actual == number, "not_equal": actual != number, "in": actual in others,
                "greater_than": actual > number, "greater_equal": actual >= number, "less_than": actual < number,
                "less_equal": actual <= number,
                "between": len(others) == 2 and others[0] <= actual <= others[1]}.get(operator, False)
    text = str(actual).lower()
    wanted = [v.lower() for v in values]
    if operator == "equals":
        return text == wanted[0]
    if operator == "not_equal":
        return text != wanted[0]
    if operator == "starts_with":
        return text.startswith(wanted[0])
    if operator == "in":
        return text in wanted
    if operator == "between":
        return len(wanted) == 2 and wanted[0] <= text <= wanted[1]
    return {"greater_than": text > wanted[0], "greater_equal": text >= wanted[0], "less_than": text < wanted[0],
            "less_equal": text <= wanted[0]}[operator]


def _matches(record: dict[str, Any], tree: Any) -> bool:
    if isinstance(tree, Condition):
        return _compare(record.get(tree.field), tree.operator, tree.values)
    joiner, left, right = tree
    if joiner == "and":
        return _matches(record, left) and _matches(record, right)
    return _matches(record, left) or _matches(record, right)


def _fields_in(tree: Any) -> list[str]:
    if isinstance(tree, Condition):
        return [tree.field]
    return _fields_in(tree[1]) + _fields_in(tree[2])


async def search_records(request: Request, call: Any) -> Response:
    from .routes import module_spec

    spec = module_spec(call, request)
    query = request.query_params
    schema = call.sandbox.schema.fields[spec.api_name]
    given = [k for k in ("criteria", "email", "phone", "word") if query.get(k)]
    if not given:
        raise ZohoError(400, "REQUIRED_PARAM_MISSING", "One of the expected parameter is missing",
                        {"param_name": "criteria, email, phone, word"})
    if len(given) > 1:
        raise ZohoError(400, "AMBIGUITY_DURING_PROCESSING", "ambiguity while processing the request",
                        {"ambiguity_due_to": given})
    kind = given[0]
    value = query[kind]
    if kind == "criteria":
        tree = _Parser(value).parse()
        for name in _fields_in(tree):
            if name not in schema and name != "id":
                raise ZohoError(400, "INVALID_QUERY", "invalid query formed",
                                {"reason": "the field is not available", "api_name": name})

        def wanted(record: dict[str, Any]) -> bool:
            return _matches(record, tree)
    else:
        types = {"email": ("email",), "phone": ("phone",), "word": ("text", "email", "phone", "website",
                                                                    "textarea", "picklist")}[kind]
        names = [n for n, f in schema.items() if f.data_type in types]
        needle = value.lower()

        def wanted(record: dict[str, Any]) -> bool:
            for name in names:
                current = record.get(name)
                if not isinstance(current, str):
                    continue
                if (needle in current.lower()) if kind == "word" else (current.lower() == needle):
                    return True
            return False
    try:
        page = max(1, int(query.get("page", 1)))
        per_page = min(MAX_PER_PAGE, max(1, int(query.get("per_page", MAX_PER_PAGE))))
    except ValueError:
        raise ZohoError(400, "INVALID_DATA", "invalid data", {"param_name": "page"}) from None
    found = [r for r in call.sandbox.store.all(spec.api_name) if wanted(r)][:MAX_RESULTS]
    chunk = found[(page - 1) * per_page:page * per_page]
    if not chunk:
        return Response(status_code=204)
    fields = [f.strip() for f in query.get("fields", "").split(",") if f.strip()]
    data = []
    for record in chunk:
        view = call.sandbox.store.view(spec, record, subforms=False)
        data.append({**{f: view.get(f) for f in fields}, "id": view["id"]} if fields else view)
    return JSONResponse({"data": data, "info": {"per_page": per_page, "count": len(data), "page": page,
                                                "more_records": len(found) > page * per_page}})
