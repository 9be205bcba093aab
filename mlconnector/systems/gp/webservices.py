"""Web Services for Microsoft Dynamics GP (the legacy SOAP endpoint) through zeep: the WSDL (kept a day beside the
state file), the company context of each call, faults as errors with GP's logged reasons, and each operation's
policy."""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx

from mlconnector.errors import AuthError, MLConnectorError, RemoteError
from mlconnector.systems.gp.calls import PacedHttp
from mlconnector.systems.gp.records import _items

LEGACY_NS = "http://schemas.microsoft.com/dynamics/gp/2006/01"
WSDL_CACHE_SECONDS = 24 * 3600
_GUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_ACCESS = re.compile(r"access (is )?denied|not authori[sz]ed|not set up as a dynamics gp user|security", re.I)


def _plain(value: Any) -> Any:
    """zeep objects (and OrderedDicts) as plain dicts and lists."""
    from zeep.helpers import serialize_object

    def convert(item: Any) -> Any:
        if isinstance(item, Mapping):
            return {k: convert(v) for k, v in item.items()}
        if isinstance(item, list):
            return [convert(v) for v in item]
        return item

    return convert(serialize_object(value, dict))


class WebServices:
    """The SOAP service of one GP system: operations called with the company context."""

    def __init__(self, name: str, http: PacedHttp, *, wsdl: str, base_url: str, wsdl_cache: Path, namespace: str,
                 company_id: int, tenant_name: str | None, user: str | None, validation_details: bool,
                 cache_seconds: float = WSDL_CACHE_SECONDS) -> None:
        self.name = name
        self._http = http.request
        self.wsdl = wsdl
        self.base_url = base_url
        self._wsdl_cache = wsdl_cache
        self.cache_seconds = cache_seconds
        self.namespace = namespace
        self.company_id = company_id
        self.tenant_name = tenant_name
        self.user = user
        self.validation_details = validation_details
        self._client: Any = None
        self._service: Any = None
        self._client_lock = threading.Lock()
        self._policies: dict[str, Any] = {}

    def service(self, fresh: bool = False) -> Any:
        """The zeep service bound to base_url (a WSDL's own address is often an internal host name). The WSDL
        (large: every operation and type of the service, and the same until GP is upgraded) is kept beside the
        state file for WSDL_CACHE_SECONDS, so a cron run does not fetch it every time; ``fresh`` (ping) reads it
        anew."""
        with self._client_lock:
            if self._service is None:
                import zeep
                from zeep.cache import SqliteCache

                owner = self

                class Transport(zeep.Transport):
                    def post(self, address: str, message: Any, headers: dict[str, str]) -> httpx.Response:
                        return owner._http("POST", address, content=message, headers=headers)

                    def _load_remote_data(self, url: str) -> bytes:
                        response = owner._http("GET", url)
                        if response.status_code != 200:
                            raise RemoteError(owner.name, response.status_code, "",
                                              f"no WSDL at {url}; set wsdl (URL or file) in [systems.{owner.name}]")
                        return response.content

                try:
                    self._wsdl_cache.parent.mkdir(parents=True, exist_ok=True)
                    if fresh:
                        self._wsdl_cache.unlink(missing_ok=True)
                    cache = SqliteCache(path=str(self._wsdl_cache), timeout=self.cache_seconds)
                    client = zeep.Client(self.wsdl, transport=Transport(cache=cache),
                                         settings=zeep.Settings(strict=False, xml_huge_tree=True))
                except (zeep.exceptions.XMLSyntaxError, zeep.exceptions.WsdlSyntaxError) as exc:
                    raise RemoteError(self.name, 200, "", f"{self.wsdl} is not a WSDL ({exc}); is base_url the "
                                      "DynamicsGPService.asmx address?") from None
                binding = next(iter(client.wsdl.bindings))
                self._client = client
                self._service = client.create_service(binding, self.base_url)
        return self._service

    def _context(self) -> dict[str, Any]:
        self.service()
        try:
            company = self._client.get_type(f"{{{self.namespace}}}CompanyKey")(Id=self.company_id)
        except (LookupError, ValueError):
            company = {"Id": self.company_id}
        context: dict[str, Any] = {"OrganizationKey": company}
        if self.tenant_name:
            context["TenantName"] = self.tenant_name
        return context

    def call(self, operation: str, /, **params: Any) -> Any:
        """One operation with the company context; faults become AuthError / RemoteError with GP's reasons."""
        import zeep

        service = self.service()
        try:
            result = getattr(service, operation)(**params, context=self._context())
        except zeep.exceptions.Fault as fault:
            raise self._fault(fault, operation) from None
        except zeep.exceptions.TransportError as exc:
            raise RemoteError(self.name, exc.status_code, "", f"{operation}: the server did not answer with SOAP "
                              f"(HTTP {exc.status_code}); is base_url the DynamicsGPService.asmx address?",
                              retryable=exc.status_code >= 500) from None
        return _plain(result)

    def _fault(self, fault: Any, operation: str) -> MLConnectorError:
        detail = {}
        if fault.detail is not None:
            for node in fault.detail.iter():
                name = str(node.tag).rsplit("}", 1)[-1]
                if node.text and node.text.strip():
                    detail[name] = node.text.strip()
        message = str(fault.message or "")
        kind = detail.get("ExceptionType", "")
        log_id = detail.get("LogId") or next(iter(_GUID.findall(message)), None)
        if kind == "SecurityException" or _ACCESS.search(message):
            return AuthError(self.name, f"{operation}: {message} The domain account "
                             f"{self.user or '(the current user)'} must be a GP web services user with a role "
                             "allowing this operation (Dynamics Security Console) and access to company "
                             f"{self.company_id}.")
        validation = kind == "ValidationException" or "client" in str(fault.code or "").lower()
        if validation and log_id and self.validation_details:
            reasons = self._logged_reasons(log_id)
            if reasons:
                message = f"{'; '.join(reasons)} (LogId {log_id})"
        code = "ValidationException" if validation else (kind or "SystemException")
        return RemoteError(self.name, 500, code, f"{operation}: {message}", retryable=not validation)

    def _logged_reasons(self, log_id: str) -> list[str]:
        """The validation messages GP logged for a fault (best effort: none when the lookup fails)."""
        import zeep

        try:
            result = _plain(self.service().GetLoggedValidationResultByKey(logId=log_id, context=self._context()))
        except (zeep.exceptions.Error, MLConnectorError):
            return []
        errors = _items((result or {}).get("Errors"), "ValidationError")
        return [str(e.get("Message")) for e in errors if isinstance(e, Mapping) and e.get("Message")]

    def policy(self, operation: str) -> Any:
        if operation not in self._policies:
            self._policies[operation] = self.call("GetPolicyByOperation", operation=operation)
        return self._policies[operation]

    def has_policy(self, operation: str) -> bool:
        """Whether this run has read ``operation``'s policy already."""
        return operation in self._policies
