"""Zoho's error bodies: one exception type the routes raise, turned into Zoho's JSON by the app."""

from __future__ import annotations

from typing import Any

from mlconnector.sandbox.common import JSONResponse



class ZohoError(Exception):
    """A top-level CRM API error: ``{"code", "details", "message", "status": "error"}`` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.details)

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    """The shape Zoho uses for every error, top-level or inside ``data[]``."""
    return {"code": code, "details": details or {}, "message": message, "status": "error"}


def invalid_module(module: str) -> ZohoError:
    return ZohoError(400, "INVALID_MODULE", "the module name given seems to be invalid", {"resource_path_index": 0})


def required_param(name: str) -> ZohoError:
    return ZohoError(400, "REQUIRED_PARAM_MISSING", "required param is missing", {"param_name": name})


def invalid_url() -> ZohoError:
    return ZohoError(404, "INVALID_URL_PATTERN", "Please check if the URL trying to access is a correct one")


class RecordError(Exception):
    """A per-record failure: becomes one ``data[]`` item (code, details, message, status)."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.details = details or {}

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.details)

    @classmethod
    def mandatory(cls, api_name: str, json_path: str) -> "RecordError":
        return cls("MANDATORY_NOT_FOUND", "required field not found", {"api_name": api_name, "json_path": json_path})

    @classmethod
    def invalid(cls, api_name: str, json_path: str, message: str = "invalid data", **extra: Any) -> "RecordError":
        return cls("INVALID_DATA", message, {**extra, "api_name": api_name, "json_path": json_path})
