"""F&O's OData error bodies. The shape is community-observed, not documented by Microsoft:
``{"error": {"code": "", "message": "An error has occurred.", "innererror": {"message": ..., "type": ...}}}``
for write failures (the Infolog text inside), ``{"error": {"code": "", "message": ...}}`` for request errors."""

from __future__ import annotations

from typing import Any

from starlette.responses import Response

from mlconnector.sandbox.common import JSONResponse

ODATA_JSON = "application/json; odata.metadata=minimal"
ODATA_HEADERS = {"OData-Version": "4.0"}
WRITE_EXCEPTION = "Microsoft.Dynamics.Platform.Integration.Services.OData.AxODataWriteException"


class ODataError(Exception):
    """An error F&O would answer: status, message, optional inner error (Infolog) and headers."""

    def __init__(self, status: int, message: str, inner: str | None = None,
                 headers: dict[str, str] | None = None, inner_type: str = WRITE_EXCEPTION) -> None:
        super().__init__(f"{status}: {inner or message}")
        self.status = status
        self.message = message
        self.inner = inner
        self.inner_type = inner_type
        self.headers = headers or {}

    def response(self) -> Response:
        if self.status == 401:
            return Response(b"", status_code=401, headers=self.headers)  # F&O's 401 carries no body
        error: dict[str, Any] = {"code": "", "message": self.message}
        if self.inner is not None:
            error["innererror"] = {"message": self.inner, "type": self.inner_type, "stacktrace": ""}
        return JSONResponse({"error": error}, status_code=self.status,
                            headers={**ODATA_HEADERS, **self.headers}, media_type=ODATA_JSON)


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers={**ODATA_HEADERS, **(headers or {})},
                        media_type=ODATA_JSON)


def bad_request(message: str) -> ODataError:
    return ODataError(400, message)


def not_found(segment: str) -> ODataError:
    return ODataError(404, f"Resource not found for the segment '{segment}'.")


def write_failed(aot: str, infolog: str) -> ODataError:
    """A create or update F&O's business logic refused; the reason is the Infolog inside the inner error."""
    return ODataError(400, "An error has occurred.", f"Write failed for table row of type '{aot}'. "
                                                     f"Infolog: Error: {infolog}")


def unauthorized(resource: str, detail: str = "") -> ODataError:
    challenge = f'Bearer authorization_uri="https://login.microsoftonline.com/common/oauth2/authorize", ' \
                f'resource_id="{resource}"'
    if detail:
        challenge += f', error="invalid_token", error_description="{detail}"'
    return ODataError(401, "Unauthorized", headers={"WWW-Authenticate": challenge})
