"""Business Central's error bodies: ``{"error": {"code": ..., "message": ...}}`` with the documented codes."""

from __future__ import annotations

import uuid
from typing import Any

from mlconnector.sandbox.common import JSONResponse


# BC answers with this content type on API and ODataV4 responses (use-odata-batch.md sample).
ODATA_JSON = "application/json; odata.metadata=minimal"
ODATA_HEADERS = {"OData-Version": "4.0"}


class ODataError(Exception):
    """An error BC would return: HTTP status, BC error code and message (CorrelationId appended on the wire)."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return error_response(self.status, self.code, self.message, self.headers)


def error_response(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    # Real messages end with "  CorrelationId:  <guid>." (use-odata-batch.md); clients must not parse past the code.
    body = {"error": {"code": code, "message": f"{message}  CorrelationId:  {uuid.uuid4()}."}}
    return JSONResponse(body, status_code=status, headers={**ODATA_HEADERS, **(headers or {})},
                        media_type=ODATA_JSON)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={**ODATA_HEADERS, **(headers or {})},
                        media_type=ODATA_JSON)


# Constructors for the errors the sandbox raises, named after what went wrong.

def not_found(entity: str, key: str) -> ODataError:
    return ODataError(404, "BadRequest_NotFound",
                      f"The {entity} does not exist. Identification fields and values: Id='{key}'")


def segment_not_found(segment: str) -> ODataError:
    return ODataError(404, "BadRequest_ResourceNotFound", f"Resource not found for the segment '{segment}'.")


def query_syntax(detail: str = "Bad Request - Error in query syntax.") -> ODataError:
    return ODataError(400, "BadRequest_NotFound", detail)


def unknown_property(name: str, entity: str) -> ODataError:
    return ODataError(400, "BadRequest_NotFound",
                      f"Could not find a property named '{name}' on type 'Microsoft.NAV.{entity}'.")


def missing_etag() -> ODataError:
    return ODataError(400, "BadRequest_InvalidToken",
                      "Could not validate the client concurrency token required by the service. "
                      "Please provide a valid token in the client request.")


def entity_changed() -> ODataError:
    # ODataConflictException -> Request_EntityChanged, HTTP 409 (include-http-status-error-codes.md row 409).
    return ODataError(409, "Request_EntityChanged", "Another user has already changed the record.")


def invalid_credentials(headers: dict[str, str] | None = None) -> ODataError:
    return ODataError(401, "Authentication_InvalidCredentials",
                      "The server has rejected the client credentials.", headers)


def method_not_allowed(method: str, segment: str) -> ODataError:
    return ODataError(405, "BadRequest_MethodNotAllowed",
                      f"'{method}' requests for '{segment}' of EdmType 'Entity' are not allowed within "
                      "Microsoft Dynamics 365 Business Central OData web services.")


def bad_body(message: str = "Invalid Request Body") -> ODataError:
    return ODataError(400, "BadRequest", message)


def dialog(message: str) -> ODataError:
    return ODataError(400, "Application_DialogException", message)
