"""The calls of one NAV or Business Central server: where it answers (API v2.0 or page web services), requests
with a refused credential explained, BC's errors, and API mode's company (its id looked up by name once, kept
beside the state file, looked up again when BC no longer knows it)."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from mlconnector.config import SystemConfig
from mlconnector.errors import AuthError, ConfigError, MLConnectorError, RemoteError
from mlconnector.http import ApiClient
from mlconnector.systems import ConnectorContext
from mlconnector.systems.dynamics.company import _company_not_found, company_record
from mlconnector.systems.dynamics.credentials import Credentials
from mlconnector.systems.dynamics.odata import _error, _is_transient

CLOUD_ROOT = "https://api.businesscentral.dynamics.com/v2.0"
DEFAULT_CONCURRENCY = 5            # BC processes 5 requests per user at once; more only wait in its queue
_COMPANY_IN_URL = re.compile(r"companies\(([0-9a-fA-F-]{36})\)")


@dataclass(frozen=True)
class Endpoint:
    """Where the system answers: its root (``.../v2.0/{tenant}/{env}`` or ``http://host:7048/Instance``) and
    whether records come from API v2.0 or from page web services."""

    root: str
    mode: str  # "api" | "odata"
    on_premises: bool

    @property
    def api(self) -> str:
        return f"{self.root}/api/v2.0"

    @property
    def odata(self) -> str:
        return f"{self.root}/ODataV4"


def endpoint_of(system: SystemConfig) -> Endpoint:
    base = system.setting("base_url", type_=str)
    if system.kind == "bc":
        if base:
            # The cloud form is .../v2.0/{tenant}/{environment}; an on-prem root is http(s)://host:port/instance.
            return Endpoint(base.rstrip("/"), "api", "/v2.0/" not in urlsplit(base).path)
        tenant = system.setting("tenant", required=True, type_=str)
        environment = system.setting("environment", "production", type_=str)
        return Endpoint(f"{CLOUD_ROOT}/{tenant}/{environment}", "api", False)
    if not base:
        raise ConfigError(f"systems.{system.name}.base_url is missing: the server instance's OData address, "
                          "e.g. http://nav-server:7048/DynamicsNAV110")
    mode = system.setting("api", "odata", type_=str)
    if mode not in ("odata", "api"):
        raise ConfigError(f"systems.{system.name}.api must be \"odata\" (page web services) or \"api\" (API v2.0)")
    return Endpoint(base.rstrip("/"), mode, True)


class DynamicsApi:
    """Requests to one system, and API mode's company."""

    def __init__(self, system: SystemConfig, context: ConnectorContext, endpoint: Endpoint, company_name: str,
                 credentials: Credentials, auth: httpx.Auth, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.name = system.name
        self.endpoint = endpoint
        self.company_name = company_name
        self.credentials = credentials
        self._refusal = credentials.refusal
        self.auth = auth
        self.http = ApiClient(self.name, auth=self.auth, transport=context.transport, counter=context.counter,
                              max_concurrency=int(system.setting("concurrency", DEFAULT_CONCURRENCY, type_=int)),
                              is_retryable=_is_transient, sleep=sleep,
                              headers={"Accept": "application/json", "Data-Access-Intent": "ReadWrite"})
        self._company_id: str | None = None
        # The id came from an earlier run's record, not yet confirmed by this run: a company-not-found answer
        # then means a stale record, looked up again once.
        self._company_remembered = False
        self._company_lock = threading.Lock()
        self.company_record = company_record(context, self.name)

    def close(self) -> None:
        self.http.close()
        if self.credentials.token_http is not None:
            self.credentials.token_http.close()

    @property
    def base_url(self) -> str:
        return self.endpoint.api if self.endpoint.mode == "api" else self.endpoint.odata

    def call(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """One request; a refused credential becomes an AuthError that says what the server expects. A company id
        remembered from an earlier run that BC no longer knows is looked up again and the request sent once more."""
        response = self.send(method, url, **kwargs)
        if self.endpoint.mode == "api" and _company_not_found(response):
            used = self._company_in(url, kwargs)
            fresh = self._refresh_company(used) if used else None
            if used and fresh and fresh != used:
                kwargs = self._with_company(kwargs, used, fresh)
                response = self.send(method, url.replace(f"companies({used})", f"companies({fresh})"), **kwargs)
        return response

    def send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, url, **kwargs)
        if response.status_code == 401:
            raise AuthError(self.name, self._refusal(response))
        return response

    @staticmethod
    def _company_in(url: str, kwargs: Mapping[str, Any]) -> str | None:
        """The company id a request names: in its URL, or in a subscription body's resource."""
        body = kwargs.get("json")
        resource = body.get("resource") if isinstance(body, Mapping) else None
        for text in (url, resource if isinstance(resource, str) else ""):
            match = _COMPANY_IN_URL.search(text)
            if match:
                return match.group(1)
        return None

    @staticmethod
    def _with_company(kwargs: dict[str, Any], stale: str, fresh: str) -> dict[str, Any]:
        """A subscription body names the company in its resource."""
        body = kwargs.get("json")
        if isinstance(body, Mapping):
            kwargs = {**kwargs, "json": {k: v.replace(f"companies({stale})", f"companies({fresh})")
                                         if isinstance(v, str) else v for k, v in body.items()}}
        return kwargs

    def fail(self, response: httpx.Response, what: str) -> RemoteError:
        code, message = _error(response)
        return RemoteError(self.name, response.status_code, code, f"{what}: {message}" if message else what,
                           retryable=response.status_code >= 500)

    # -- company -----------------------------------------------------------------------------------------------
    def company_id(self) -> str:
        """API mode: the company's id, resolved by its (case-sensitive) name; an id in ``company`` is used as is.
        The id found is remembered next to the state file, so later runs (and connectors) skip the lookup."""
        if self._company_id is None:
            with self._company_lock:
                if self._company_id is not None:
                    return self._company_id
                if re.fullmatch(r"[0-9a-fA-F-]{36}", self.company_name):
                    self._company_id = self.company_name.lower()
                    return self._company_id
                remembered = self.company_record.get(self.endpoint.api, self.company_name)
                if remembered:
                    self._company_remembered = True
                    self._company_id = remembered
                else:
                    self._company_id = self._lookup_company()
        return self._company_id

    def _lookup_company(self) -> str:
        response = self.send("GET", f"{self.endpoint.api}/companies")
        if response.status_code != 200:
            raise self.api_unavailable(response, "companies")
        names = {str(c.get("name")): str(c.get("id")) for c in response.json().get("value", [])}
        if self.company_name not in names:
            raise ConfigError(self.company_hint(list(names)))
        found = names[self.company_name]
        self.company_record.put(self.endpoint.api, self.company_name, found)
        return found

    def _refresh_company(self, used: str) -> str | None:
        """BC does not know the company id ``used``. If it is the one remembered from an earlier run, forget it
        and look the company up again, once per connector; concurrent calls that met the same answer share that
        lookup. Returns the id to use now (``used`` itself when there is nothing better to try)."""
        with self._company_lock:
            if self._company_remembered and self._company_id == used:
                self._company_remembered = False
                self.company_record.put(self.endpoint.api, self.company_name, None)
                self._company_id = None
                self._company_id = self._lookup_company()
            return self._company_id

    def company_hint(self, names: list[str]) -> str:
        close = [n for n in names if n.lower() == self.company_name.lower()]
        if close:
            return (f"systems.{self.name}.company = {self.company_name!r} does not exist; company names are "
                    f"case-sensitive: did you mean {close[0]!r}?")
        return (f"systems.{self.name}.company = {self.company_name!r} does not exist; companies there: "
                f"{', '.join(repr(n) for n in names) or 'none'}")

    def api_unavailable(self, response: httpx.Response, what: str) -> MLConnectorError:
        if response.status_code == 405:
            return RemoteError(self.name, 405, "BadRequest_MethodNotAllowed",
                               "API/OData services are disabled on the server instance: enable ODataServicesEnabled"
                               " and ApiServicesEnabled")
        if response.status_code == 404 and not _error(response)[0]:
            return RemoteError(self.name, 404, "", f"nothing answers at {self.base_url} ({what}); check base_url "
                               "(server instance name) and that API services are enabled")
        return self.fail(response, f"GET {what}")

    def company_url(self) -> str:
        if self.endpoint.mode == "api":
            return f"{self.endpoint.api}/companies({self.company_id()})"
        name = quote(self.company_name.replace("'", "''"), safe="")
        return f"{self.endpoint.odata}/Company('{name}')"

    def read_failure(self, response: httpx.Response, url: str) -> MLConnectorError:
        code, message = _error(response)
        if response.status_code == 404 and self.endpoint.mode == "odata":
            service = urlsplit(url).path.rsplit("/", 1)[-1]
            if code == "Internal_CompanyNotFound":
                return ConfigError(f"{self.name}: {message or 'company not found'}; company names are case-"
                                   "sensitive (see `mlconnector ping`)")
            return RemoteError(self.name, 404, code, f"{service}: OData services not enabled or page not published "
                               f"(publish it on the Web Services page, or map it in [systems.{self.name}.services])")
        return self.fail(response, f"GET {urlsplit(url).path}")
