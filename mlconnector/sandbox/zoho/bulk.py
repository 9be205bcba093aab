"""Bulk Write: zipped CSV uploads, jobs that run on a later poll, and the zipped result CSV."""

from __future__ import annotations

import csv
import io
import zipfile
from dataclasses import dataclass, field
from datetime import datetime
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

from .errors import RecordError, ZohoError
from .fields import Field
from .modules import ModuleSpec
from .store import RecordStore, WriteOutcome

MAX_FILE_BYTES = 25 * 1024 * 1024
MAX_ROWS = 25_000
MAX_MAPPED_FIELDS = 200


@dataclass
class UploadedFile:
    file_id: str
    name: str
    csv_name: str
    rows: list[list[str]]   # header first


@dataclass
class BulkJob:
    id: str
    operation: str
    module: ModuleSpec
    file: UploadedFile
    find_by: str | None
    field_mappings: list[dict[str, Any]]
    ignore_empty: bool
    callback: dict[str, Any] | None
    created_time: str
    created_by: dict[str, str]
    created_at: datetime
    status: str = "ADDED"
    polls: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {"added_count": 0, "skipped_count": 0,
                                                             "updated_count": 0, "total_count": 0})
    result_zip: bytes | None = None
    outcomes: list[tuple[str, WriteOutcome]] = field(default_factory=list)


def multipart_file(content_type: str, body: bytes) -> tuple[str, bytes] | None:
    """The ``file`` part of a multipart/form-data body as (filename, bytes), parsed with the stdlib."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\nMIME-Version: 1.0\r\n\r\n" + body)
    if not message.is_multipart():
        return None
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            return part.get_filename() or "file.zip", part.get_payload(decode=True) or b""
    return None


def read_upload(file_id: str, name: str, data: bytes) -> UploadedFile:
    """Unzip an upload and read its one CSV (Zoho: zip only, one CSV per module)."""
    if len(data) > MAX_FILE_BYTES:
        raise ZohoError(413, "FILE_TOO_LARGE", "File size too large to process")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        csv_names = [n for n in archive.namelist() if n.lower().endswith(".csv")]
        if not csv_names:
            raise zipfile.BadZipFile
        text = archive.read(csv_names[0]).decode("utf-8-sig")
    except (zipfile.BadZipFile, UnicodeDecodeError):
        raise ZohoError(400, "INVALID_FILE_FORMAT", "invalid file format. only zip format is supported") from None
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise ZohoError(400, "INVALID_FILE_FORMAT", "invalid file format. only zip format is supported")
    if len(rows) - 1 > MAX_ROWS:
        raise ZohoError(400, "LIMIT_EXCEEDED", "the file has more records than allowed", {"limit": MAX_ROWS})
    return UploadedFile(file_id, name, csv_names[0], rows)


def validate_job(body: Any, files: dict[str, UploadedFile], spec_lookup: Any) -> tuple[str, dict[str, Any], ModuleSpec]:
    """Check a create-job request; returns (operation, resource, module spec) or raises Zoho's 400s."""
    if not isinstance(body, dict):
        raise ZohoError(400, "INVALID_DATA", "invalid data")
    operation = body.get("operation")
    if operation is None:
        raise ZohoError(400, "MANDATORY_NOT_FOUND", "required key operation is not found in request body.",
                        {"api_name": "operation", "json_path": "$.operation"})
    if operation not in ("insert", "update", "upsert"):
        raise ZohoError(400, "INVALID_DATA", "invalid data", {"api_name": "operation", "json_path": "$.operation",
                                                              "supported_values": ["insert", "update", "upsert"]})
    callback = body.get("callback")
    if callback is not None:
        if not isinstance(callback, dict) or not str(callback.get("url", "")).startswith(("http://", "https://")):
            raise ZohoError(400, "INVALID_DATA", "invalid callback url",
                            {"api_name": "url", "json_path": "$.callback.url"})
        if str(callback.get("method", "post")).lower() != "post":
            raise ZohoError(400, "INVALID_CALLBACK_METHOD", "invalid callback method",
                            {"supported_callback_methods": ["post"]})
    resources = body.get("resource")
    if not isinstance(resources, list) or len(resources) != 1 or not isinstance(resources[0], dict):
        raise ZohoError(400, "MANDATORY_NOT_FOUND", "required key resource is not found in request body.",
                        {"api_name": "resource", "json_path": "$.resource"})
    resource = resources[0]
    module_name = (resource.get("module") or {}).get("api_name") if isinstance(resource.get("module"), dict) \
        else resource.get("module")
    spec = spec_lookup(str(module_name or ""))
    if spec is None or not spec.bulk_write:
        raise ZohoError(400, "MODULE_NOT_AVAILABLE", f"Requested module '{module_name}' is not available.",
                        {"api_name": "module", "json_path": "$.resource[0].module"})
    if str(resource.get("file_id")) not in files:
        raise ZohoError(400, "INVALID_FILE_ID", "improper file id",
                        {"api_name": "file_id", "json_path": "$.resource[0].file_id"})
    if operation in ("update", "upsert") and not resource.get("find_by"):
        raise ZohoError(400, "MANDATORY_NOT_FOUND", "required key find_by is not found in request body.",
                        {"api_name": "find_by", "json_path": "$.resource[0].find_by"})
    _validate_mappings(resource, spec, files[str(resource["file_id"])], operation)
    return operation, resource, spec


def _validate_mappings(resource: dict[str, Any], spec: ModuleSpec, upload: UploadedFile, operation: str) -> None:
    mappings = resource.get("field_mappings")
    if mappings is None:  # without mappings Zoho maps CSV headers to API names
        mappings = [{"api_name": h, "index": i} for i, h in enumerate(upload.rows[0])]
        resource["field_mappings"] = mappings
    if not isinstance(mappings, list) or len(mappings) > MAX_MAPPED_FIELDS:
        raise ZohoError(400, "HEADER_LIMIT_EXCEEDED", "too many fields mapped", {"limit": MAX_MAPPED_FIELDS})
    width = len(upload.rows[0])
    for i, mapping in enumerate(mappings):
        name = mapping.get("api_name") if isinstance(mapping, dict) else None
        if not name:
            raise ZohoError(400, "MANDATORY_NOT_FOUND", "required key api_name is not found in request body.",
                            {"api_name": "api_name", "json_path": f"$.resource[0].field_mappings[{i}].api_name"})
        index = mapping.get("index")
        if index is None and "default_value" not in mapping:
            raise ZohoError(400, "COLUMN_INDEX_NOT_FOUND",
                            f"required key index for field {name} is not found in request body.",
                            {"json_path": f"$.resource[0].field_mappings[{i}].index"})
        if index is not None and not (isinstance(index, int) and 0 <= index < width):
            raise ZohoError(400, "COLUMN_INDEX_NOT_FOUND", f"invalid column index for field {name}",
                            {"json_path": f"$.resource[0].field_mappings[{i}].index"})
        if name in spec.lookups and not mapping.get("find_by"):
            raise ZohoError(400, "MANDATORY_NOT_FOUND", "required key find_by is not found in request body.",
                            {"api_name": "find_by", "json_path": f"$.resource[0].field_mappings[{i}].find_by"})
    mapped = {m["api_name"] for m in mappings}
    if operation != "update" and not set(spec.mandatory) <= mapped:
        raise ZohoError(400, "MANDATORY_FIELDS_NOT_MAPPED", "All mandatory fields are not mapped for the layout",
                        {"fields": sorted(set(spec.mandatory) - mapped)})


def row_record(job: BulkJob, row: list[str], store: RecordStore) -> dict[str, Any]:
    """One CSV row as an API-style record; lookups resolved through their ``find_by`` field."""
    record: dict[str, Any] = {}
    for mapping in job.field_mappings:
        name = mapping["api_name"]
        index = mapping.get("index")
        value: Any = row[index] if index is not None and index < len(row) else None
        if value in (None, "") and "default_value" in mapping:
            value = (mapping["default_value"] or {}).get("value")
        if value in (None, ""):
            if job.ignore_empty:
                continue
            value = None
        if name in job.module.lookups and value is not None:
            value = _resolve_lookup(store, job.module.lookups[name], mapping["find_by"], value, name)
        elif isinstance(value, str):
            value = _typed(value, store.schema.field(job.module.api_name, name), name)
        record[name] = value
    return record


def _typed(text: str, known: Field | None, name: str) -> Any:
    """A CSV cell as the field's type holds it: the import stores a boolean field's "true" as true and a
    currency's "20.9" as 20.9, as an API write of those values would (reads return them typed)."""
    kind = known.data_type if known is not None else "text"
    try:
        if kind == "boolean":
            if text.strip().lower() not in ("true", "false"):
                raise ValueError(text)
            return text.strip().lower() == "true"
        if kind == "integer":
            number = float(text)
            if not number.is_integer():
                raise ValueError(text)
            return int(number)
        if kind in ("double", "currency"):
            return float(text)
    except ValueError:
        raise RecordError("INVALID_DATA", "invalid data", {"api_name": name, "expected_data_type": kind}) from None
    return text


def _resolve_lookup(store: RecordStore, target: str, find_by: str, value: Any, name: str) -> dict[str, Any]:
    if find_by == "id":
        return {"id": str(value)}
    ref = next((r for r in store.all(target) if str(r.get(find_by, "")).lower() == str(value).lower()), None)
    if ref is None:
        raise RecordError("INVALID_DATA", "invalid data", {"api_name": name})
    return {"id": ref["id"]}


def result_zip(job: BulkJob, statuses: list[tuple[str, str, str]]) -> bytes:
    """The result file: the uploaded CSV plus STATUS, RECORD_ID and ERRORS columns, zipped."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow([*job.file.rows[0], "STATUS", "RECORD_ID", "ERRORS"])
    for row, (status, record_id, errors) in zip(job.file.rows[1:], statuses):
        writer.writerow([*row, status, record_id, errors])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(f"{job.id}.csv", out.getvalue())
    return buffer.getvalue()


def error_text(error: RecordError) -> str:
    """Zoho's ERRORS column: ``CODE-field`` (e.g. ``MANDATORY_NOT_FOUND-Company``)."""
    name = error.details.get("api_name")
    return f"{error.code}-{name}" if name else error.code


def job_details(job: BulkJob, api_domain: str) -> dict[str, Any]:
    """``GET /crm/bulk/v8/write/{job_id}`` body (bulk_write.json Bulk_Write_Response)."""
    file_status = job.status
    body: dict[str, Any] = {
        "status": job.status,
        "character_encoding": "UTF-8",
        "resource": [{
            "status": file_status, "type": "data",
            "module": {"api_name": job.module.api_name, "id": job.module.id},
            "field_mappings": job.field_mappings,
            "file": {"status": file_status, "name": job.file.csv_name, **job.counts},
        }],
        "id": job.id,
        "created_by": job.created_by,
        "operation": job.operation,
        "created_time": job.created_time,
    }
    if job.callback:
        body["callback"] = job.callback
    if job.status == "COMPLETED":
        body["result"] = {"download_url": f"{api_domain}/crm/bulk/v8/write/{job.id}/result"}
    return body
