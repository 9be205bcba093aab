"""A small OpenAPI 3.0 schema checker for the contract tests: enough of JSON Schema for Zoho's crm-oas files.

Zoho's files refer to each other by absolute URLs (raw.githubusercontent.com/.../v8.0/record.json#/...);
those resolve to the copies in tests/specs/zoho/ (PROVENANCE.md there). A reference to a file not saved there is
treated as "anything" and reported in ``unresolved``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SPECS = Path(__file__).resolve().parents[1] / "specs" / "zoho"

_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "integer": int, "number": (int, float)}


@dataclass
class Specs:
    directory: Path = SPECS
    files: dict[str, dict[str, Any]] = field(default_factory=dict)
    unresolved: set[str] = field(default_factory=set)

    def load(self, name: str) -> dict[str, Any]:
        if name not in self.files:
            self.files[name] = json.loads((self.directory / name).read_text(encoding="utf-8"))
        return self.files[name]

    def resolve(self, ref: str, current: str) -> tuple[dict[str, Any] | None, str]:
        where, _, pointer = ref.partition("#")
        name = where.rsplit("/", 1)[-1] if where else current
        if not (self.directory / name).exists():
            self.unresolved.add(ref)
            return None, current
        node: Any = self.load(name)
        for part in filter(None, pointer.split("/")):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node, name

    def operation(self, name: str, method: str, path: str) -> tuple[str, dict[str, Any]] | None:
        """The operation of spec file ``name`` whose path template matches ``path``."""
        for template, item in self.load(name)["paths"].items():
            pattern = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
            if re.match(pattern, path) and method.lower() in item:
                return template, item[method.lower()]
        return None

    def check(self, schema: dict[str, Any] | None, value: Any, current: str, path: str = "$",
              depth: int = 0) -> list[str]:
        """Errors as "json.path: what"; an empty list means the value fits the schema."""
        if schema is None or depth > 40:
            return []
        if "$ref" in schema:
            target, name = self.resolve(schema["$ref"], current)
            return self.check(target, value, name, path, depth + 1)
        if value is None:
            return [] if schema.get("nullable") or not schema.get("type") else []  # Zoho sends null for empty
        errors: list[str] = []
        for key in ("oneOf", "anyOf"):
            if key in schema:
                options = [self.check(s, value, current, path, depth + 1) for s in schema[key]]
                if all(options):
                    errors.append(f"{path}: matches none of {key} ({min(options, key=len)[0]})")
        for sub in schema.get("allOf", []):
            errors += self.check(sub, value, current, path, depth + 1)
        expected = schema.get("type")
        if expected:
            python = _TYPES.get(expected)
            if python and (not isinstance(value, python) or (expected in ("integer", "number")
                                                               and isinstance(value, bool))):
                return errors + [f"{path}: expected {expected}, got {type(value).__name__}"]
        if "enum" in schema and value not in schema["enum"]:
            errors.append(f"{path}: {value!r} not in enum {schema['enum']}")
        if isinstance(value, str) and "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(f"{path}: {value!r} does not match pattern {schema['pattern']}")
        if isinstance(value, str) and "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(f"{path}: longer than {schema['maxLength']}")
        if isinstance(value, dict):
            for name in schema.get("required", []):
                if name not in value:
                    errors.append(f"{path}: missing required {name}")
            for name, sub in (schema.get("properties") or {}).items():
                if name in value:
                    errors += self.check(sub, value[name], current, f"{path}.{name}", depth + 1)
        if isinstance(value, list):
            if "maxItems" in schema and len(value) > schema["maxItems"]:
                errors.append(f"{path}: more than {schema['maxItems']} items")
            for index, item in enumerate(value):
                errors += self.check(schema.get("items"), item, current, f"{path}[{index}]", depth + 1)
        return errors


def json_schema(node: dict[str, Any] | None) -> dict[str, Any] | None:
    """The application/json schema of a requestBody or response object."""
    content = (node or {}).get("content") or {}
    for media, spec in content.items():
        if "json" in media:
            return spec.get("schema")
    return None
