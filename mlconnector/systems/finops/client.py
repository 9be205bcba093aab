"""F&O's API as the connector calls it: the Entra access token (client credentials), calls under ``/data/``,
errors with F&O's message, key URLs and the legal entity's filter, and every read paged by ``Prefer:
odata.maxpagesize`` and the nextLink, cross-company."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx

from mlconnector.auth import Token, TokenAuth, entra_hints, entra_token
from mlconnector.config import SystemConfig
from mlconnector.errors import AuthError, ConfigError, MLConnectorError, RemoteError
from mlconnector.http import ApiClient
from mlconnector.systems import ConnectorContext
from mlconnector.systems.finops.odata import ENTITIES, EntityInfo, error_text, quote_string
from mlconnector.systems.odata_paging import NextLinkPaginator, read_rows

AUTHORITY = "https://login.microsoftonline.com"
DEFAULT_CONCURRENCY = 8          # F&O allows 52 concurrent requests per user per web server; stay well below


class CrossCompanyPaginator(NextLinkPaginator):
    """F&O's next links, each read cross-company: never a page in the default company's context, whatever the
    link carries. https://learn.microsoft.com/dynamics365/fin-ops-core/dev-itpro/data-entities/cross-company-behavior
    """

    def follow(self, link: str) -> str:
        if "cross-company=true" in link.lower():
            return link
        return link + ("&" if "?" in link else "?") + "cross-company=true"


class FinOpsApi:
    """The calls of one F&O environment, for one legal entity."""

    def __init__(self, system: SystemConfig, context: ConnectorContext, *, root: str, client_id: str,
                 token_url: str, scope: str, legal_entity: str, page_size: int,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.name = system.name
        self.context = context
        self.root = root
        self.client_id = client_id
        self.token_url = token_url
        self.scope = scope
        self.legal_entity = legal_entity
        self.page_size = page_size
        self._sleep = sleep
        self.token_http = ApiClient(self.name, transport=context.transport, counter=context.counter, sleep=sleep)
        self.auth = TokenAuth(self.mint, context.token_cache(self.name))
        self.http = ApiClient(self.name, auth=self.auth, transport=context.transport, counter=context.counter,
                              max_concurrency=int(system.setting("concurrency", DEFAULT_CONCURRENCY, type_=int)),
                              sleep=sleep, headers={"Accept": "application/json", "OData-Version": "4.0"})

    @property
    def base_url(self) -> str:
        return f"{self.root}/data"

    def close(self) -> None:
        self.http.close()
        self.token_http.close()

    def mint(self, current: Token | None) -> Token:
        form = {"grant_type": "client_credentials", "client_id": self.client_id,
                "client_secret": self.context.secrets.require(self.name, "client_secret"), "scope": self.scope}
        hints = {**entra_hints(self.name, self.client_id),
                 70011: f"scope {self.scope} refused; set environment to the F&O host name (no path, no trailing "
                        "slash) or scope to https://<environment>/.default"}
        return entra_token(self.token_http, self.token_url, form, self.name, hints)

    def call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = path if path.startswith("http") else f"{self.base_url}/{path}"
        response = self.http.request(method, url, **kwargs)
        if response.status_code == 401:
            raise AuthError(self.name, "F&O refused the access token: register the app in F&O (System "
                                       "administration > Setup > Microsoft Entra applications: client id "
                                       f"{self.client_id} and the user it acts as) and check environment")
        return response

    def fail(self, response: httpx.Response, what: str) -> RemoteError:
        return RemoteError(self.name, response.status_code, message=f"{what}: {error_text(response) or 'error'}",
                           retryable=response.status_code >= 500)

    def info(self, entity: str) -> EntityInfo:
        try:
            return ENTITIES[entity]
        except KeyError:
            raise ConfigError(f"{self.name}: unknown entity {entity!r}; known: {', '.join(ENTITIES)}") from None

    def key_url(self, entity: str, value: Any, key: str | None = None) -> str:
        key = key or self.info(entity).key
        literal = str(int(value)) if isinstance(value, (int, float)) or (key == "InvoiceIdentifier"
                                                                       and str(value).isdigit()) \
            else quote(quote_string(value), safe="'")
        return f"{entity}(dataAreaId={quote_string(self.legal_entity)},{key}={literal})"

    def company_filter(self, *terms: str) -> str:
        return " and ".join([f"dataAreaId eq {quote_string(self.legal_entity)}", *(f"({t})" for t in terms if t)])

    # -- reads -------------------------------------------------------------------------------------------------
    def pages(self, entity: str, params: dict[str, str]) -> Iterator[dict[str, Any]]:
        """Every row, page by page (``odata_paging``). Every read is cross-company."""
        paginator = CrossCompanyPaginator(self.page_size)
        yield from read_rows(self.call, paginator.init_request(f"{self.base_url}/{entity}",
                                                               {"cross-company": "true", **params}),
                             paginator, lambda response: self.read_failure(response, entity))

    def read_failure(self, response: httpx.Response, entity: str) -> MLConnectorError:
        if response.status_code == 404:
            return RemoteError(self.name, 404, message=f"no entity set {entity} at {self.base_url} (names are "
                               "case-sensitive; is the entity public?)")
        return self.fail(response, f"GET {entity}")
