"""``POST /data/$batch``: OData v4.0 batch requests as F&O serves them (multipart/mixed, OData v4.0 Part 1
§11.7). A batch is an ordered series of single requests and changesets; a changeset (a nested multipart/mixed)
holds POST/PATCH/DELETE requests that run in order inside one transaction: when one fails, every change the
changeset made is undone and its response is that one failing request's response (ASP.NET Web API OData, which
F&O's OData stack is built on, answers a failed changeset so). Requests in a changeset may address an entity an
earlier request of the same changeset created by ``$<Content-ID>`` (``POST $1/SalesOrderLines``).

The batch as a whole answers 200 with a multipart/mixed body of per-request responses (``application/http``
parts carrying their Content-ID, the HTTP status line, headers and the JSON body); failures of single requests
live inside it. A request that is not a well-formed batch is a 400 for the whole batch. MIME parsing is
Python's ``email`` package."""

from __future__ import annotations

import email.parser
import email.policy
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.message import Message
from http import HTTPStatus
from urllib.parse import urlsplit

from starlette.responses import Response

from .errors import ODataError, bad_request

CRLF = b"\r\n"
WRITE_METHODS = frozenset({"POST", "PATCH", "PUT", "DELETE"})


@dataclass
class Operation:
    """One request inside a batch: method, URL as written, headers, body and its Content-ID."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes
    content_id: str | None = None


@dataclass
class Changeset:
    operations: list[Operation] = field(default_factory=list)


@dataclass
class OperationResult:
    status: int
    headers: dict[str, str]
    body: bytes
    content_id: str | None = None


# The app runs one operation (its URL already resolved to a path below /data/) and returns its response.
Dispatch = Callable[[Operation, str], Awaitable[OperationResult]]


class ChangesetFailed(Exception):
    def __init__(self, result: OperationResult) -> None:
        super().__init__(result.status)
        self.result = result


def _boundary_message(content_type: str, body: bytes) -> Message:
    if not content_type.lower().startswith("multipart/mixed") or "boundary=" not in content_type.lower():
        raise bad_request("A batch request must have the content type multipart/mixed with a boundary.")
    message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + CRLF + CRLF + body)
    if not message.is_multipart() or message.defects:
        raise bad_request("The batch request body is not a valid multipart/mixed message for its boundary.")
    return message


def parse_batch(content_type: str, body: bytes) -> list[Operation | Changeset]:
    """The batch's items in order: single operations and changesets."""
    items: list[Operation | Changeset] = []
    for part in _boundary_message(content_type, body).get_payload():
        if part.get_content_type() == "multipart/mixed":
            changeset = Changeset([_operation(p) for p in part.get_payload()])
            for op in changeset.operations:
                if op.method not in WRITE_METHODS:
                    raise bad_request(f"A changeset may only contain POST, PATCH, PUT or DELETE requests, not "
                                      f"{op.method}.")
            items.append(changeset)
        else:
            items.append(_operation(part))
    return items


def _operation(part: Message) -> Operation:
    if part.get_content_type() != "application/http":
        raise bad_request(f"Batch parts must have the content type application/http, not "
                          f"{part.get_content_type()}.")
    raw = part.get_payload(decode=True) or b""
    raw = raw.lstrip(b"\r\n")
    request_line, _, rest = raw.partition(b"\n")
    words = request_line.decode("utf-8", "replace").strip().split()
    if len(words) not in (2, 3) or (len(words) == 3 and not words[2].startswith("HTTP/")):
        raise bad_request(f"Invalid request line in a batch part: {request_line[:80]!r}.")
    inner = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(rest)
    headers = {k.lower(): str(v) for k, v in inner.items()}
    payload = inner.get_payload(decode=True) or b""
    return Operation(words[0].upper(), words[1], headers, payload.strip(), part.get("Content-ID"))


def resolve(url: str, references: dict[str, str]) -> str:
    """The operation's target as a path below ``/data/``: absolute URLs, absolute paths, paths relative to the
    service root and ``$<Content-ID>`` references to an entity created earlier in the same changeset."""
    if url.startswith("$"):
        reference, _, tail = url[1:].partition("/")
        if reference not in references:
            raise bad_request(f"The Content-ID '{reference}' is not defined by an earlier request in this "
                              "changeset.")
        return references[reference] + (f"/{tail}" if tail else "")
    path = urlsplit(url).path if "://" in url else url.split("?", 1)[0]
    query = urlsplit(url).query
    path = path.lstrip("/")
    path = path[len("data/"):] if path.startswith("data/") else path
    return path + (f"?{query}" if query else "")


async def run_batch(items: list[Operation | Changeset], dispatch: Dispatch,
                    transaction: Callable[[], object]) -> list[OperationResult | list[OperationResult]]:
    """Run the items in order; each changeset inside ``transaction()``, undone when one of its requests fails."""
    out: list[OperationResult | list[OperationResult]] = []
    for item in items:
        if isinstance(item, Operation):
            out.append(await _single(item, dispatch, {}))
            continue
        results: list[OperationResult] = []
        references: dict[str, str] = {}
        try:
            with transaction():  # type: ignore[attr-defined]
                for op in item.operations:
                    result = await _single(op, dispatch, references)
                    if result.status >= 400:
                        raise ChangesetFailed(result)
                    results.append(result)
                    location = result.headers.get("Location")
                    if op.content_id and location:
                        references[op.content_id] = resolve(location, {})
        except ChangesetFailed as failed:
            results = [failed.result]
        out.append(results)
    return out


async def _single(op: Operation, dispatch: Dispatch, references: dict[str, str]) -> OperationResult:
    try:
        target = resolve(op.url, references)
        result = await dispatch(op, target)
    except ODataError as error:
        response = error.response()
        result = OperationResult(response.status_code, _headers(response), bytes(response.body))
    result.content_id = op.content_id
    return result


def _headers(response: Response) -> dict[str, str]:
    return {k.decode("latin-1").title().replace("Odata", "OData").replace("Etag", "ETag"): v.decode("latin-1")
            for k, v in response.raw_headers if k.lower() != b"content-length"}


def result_of(response: Response) -> OperationResult:
    return OperationResult(response.status_code, _headers(response), bytes(response.body))


def batch_response(results: list[OperationResult | list[OperationResult]]) -> Response:
    """The multipart/mixed batch response: one part per single request, one nested multipart per changeset."""
    boundary = f"batchresponse_{uuid.uuid4()}"
    chunks: list[bytes] = []
    for item in results:
        chunks.append(b"--" + boundary.encode() + CRLF)
        if isinstance(item, list):
            inner = f"changesetresponse_{uuid.uuid4()}"
            chunks.append(f"Content-Type: multipart/mixed; boundary={inner}".encode() + CRLF + CRLF)
            for result in item:
                chunks.append(b"--" + inner.encode() + CRLF + _part(result))
            chunks.append(b"--" + inner.encode() + b"--" + CRLF)
        else:
            chunks.append(_part(item))
    chunks.append(b"--" + boundary.encode() + b"--" + CRLF)
    return Response(b"".join(chunks), status_code=200,
                    headers={"OData-Version": "4.0", "Content-Type": f"multipart/mixed; boundary={boundary}"})


def _part(result: OperationResult) -> bytes:
    head = [b"Content-Type: application/http", b"Content-Transfer-Encoding: binary"]
    if result.content_id:
        head.append(f"Content-ID: {result.content_id}".encode())
    try:
        reason = HTTPStatus(result.status).phrase
    except ValueError:
        reason = ""
    lines = [f"HTTP/1.1 {result.status} {reason}".encode()]
    lines += [f"{k}: {v}".encode("latin-1") for k, v in result.headers.items()]
    return CRLF.join(head) + CRLF + CRLF + CRLF.join(lines) + CRLF + CRLF + result.body + CRLF
