"""Token providers: access tokens minted by a system-specific function, cached across runs and
refreshed early; a request refused for a stale token is refreshed once and resent, never looped."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

import httpx
from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from mlconnector.clock import utcnow
from mlconnector.errors import AuthError, MLConnectorError, RemoteError
from mlconnector.http import json_body


@dataclass(frozen=True)
class Token:
    """An access token and when it stops working. ``extra`` holds what comes with it (Zoho's api_domain)."""

    access_token: str = field(repr=False)
    expires_at: datetime
    extra: dict[str, Any] = field(default_factory=dict)

    def fresh(self, now: datetime, early: timedelta) -> bool:
        return now + early < self.expires_at

    def to_json(self) -> str:
        return json.dumps({"access_token": self.access_token, "expires_at": self.expires_at.isoformat(),
                           "extra": self.extra})

    @classmethod
    def from_json(cls, text: str) -> "Token":
        raw = json.loads(text)
        return cls(raw["access_token"], datetime.fromisoformat(raw["expires_at"]), raw.get("extra") or {})


class TokenCache(Protocol):
    def load(self) -> Token | None: ...
    def save(self, token: Token) -> None: ...
    def clear(self) -> None: ...


class MemoryTokenCache:
    """Keeps the token for the life of the process only."""

    def __init__(self) -> None:
        self._token: Token | None = None

    def load(self) -> Token | None:
        return self._token

    def save(self, token: Token) -> None:
        self._token = token

    def clear(self) -> None:
        self._token = None


class SecretTokenCache:
    """Keeps the token in the secret store (keyring or encrypted file), so the next run reuses it.

    Zoho caps how many access tokens a refresh token may mint, so reuse across cron runs matters.
    Where no secret store can be written (env-only containers) it quietly degrades to memory.
    """

    FIELD = "access_token_cache"

    def __init__(self, store: Any, system: str) -> None:
        self._store = store
        self._system = system
        self._memory = MemoryTokenCache()

    def load(self) -> Token | None:
        token = self._memory.load()
        if token:
            return token
        try:
            text = self._store.get(self._system, self.FIELD)
            return Token.from_json(text) if text else None
        except (MLConnectorError, ValueError, KeyError):
            return None

    def save(self, token: Token) -> None:
        self._memory.save(token)
        try:
            self._store.set(self._system, self.FIELD, token.to_json())
        except MLConnectorError:
            pass

    def clear(self) -> None:
        self._memory.clear()
        try:
            self._store.delete(self._system, self.FIELD)
        except MLConnectorError:
            pass


class SharedTokenCache:
    """Keeps the token in the state's shared ledger (the state in PostgreSQL), so every host sharing the state
    reuses it: hosts in containers often have no secret store to write, and each would mint its own.

    The token is sealed with a key derived from the system's client secret, which every host that may mint
    holds: the database alone never gives the token away. A rotated secret cannot open the old token, which then
    counts as absent (one mint). Anything that stops the cache from being read or written costs a mint, never
    the run.
    """

    def __init__(self, ledger: Any, system: str, secret: Callable[[], str | None]) -> None:
        self._ledger = ledger
        self._system = system
        self._secret = secret
        self._memory = MemoryTokenCache()

    @property
    def _document(self) -> str:
        return f"access token {self._system}"

    def _fernet(self) -> Fernet | None:
        secret = self._secret()
        if not secret:
            return None
        derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                       info=f"mlconnector access token {self._system}".encode()).derive(secret.encode())
        return Fernet(base64.urlsafe_b64encode(derived))

    def load(self) -> Token | None:
        token = self._memory.load()
        if token:
            return token
        try:
            fernet = self._fernet()
            sealed = self._ledger.read(self._document).get("sealed")
            if fernet is None or not sealed:
                return None
            token = Token.from_json(fernet.decrypt(str(sealed).encode()).decode())
        except (InvalidToken, ValueError, KeyError):
            return None
        except Exception:  # noqa: BLE001 - the database or the secret store: a mint instead
            return None
        self._memory.save(token)
        return token

    def save(self, token: Token) -> None:
        self._memory.save(token)
        try:
            fernet = self._fernet()
            if fernet is None:
                return
            with self._ledger.edited(self._document) as data:
                data["sealed"] = fernet.encrypt(token.to_json().encode()).decode()
        except Exception:  # noqa: BLE001 - the next run mints again
            pass

    def clear(self) -> None:
        self._memory.clear()
        try:
            with self._ledger.edited(self._document) as data:
                data.pop("sealed", None)
        except Exception:  # noqa: BLE001 - a stale token is refused and minted anew anyway
            pass


def token_cache(secrets: Any, ledger: Any, system: str, *, fresh: bool = False) -> TokenCache:
    """Where a system's access token is kept between runs: the state's shared ledger when the state is in
    PostgreSQL (every host), else the secret store (this host). ``fresh``: the kept token is not used (a new one
    is minted, and kept)."""
    cache: TokenCache
    if ledger is None:
        cache = SecretTokenCache(secrets, system)
    else:
        cache = SharedTokenCache(ledger, system, lambda: _optional_secret(secrets, system, "client_secret"))
    return _SavedOnly(cache) if fresh else cache


class _SavedOnly:
    """A cache that hands out nothing it held before this process saved it: the token is minted once anew."""

    def __init__(self, inner: TokenCache) -> None:
        self._inner = inner
        self._saved = False

    def load(self) -> Token | None:
        return self._inner.load() if self._saved else None

    def save(self, token: Token) -> None:
        self._saved = True
        self._inner.save(token)

    def clear(self) -> None:
        self._inner.clear()


def _optional_secret(secrets: Any, system: str, field: str) -> str | None:
    try:
        return secrets.get(system, field)
    except MLConnectorError:
        return None


class TokenAuth(httpx.Auth):
    """httpx auth flow: attach a cached token, mint when it is about to expire, and on a response that
    says the token is bad, mint once and resend once.

    ``mint`` does the system's token request and returns a Token (raising AuthError on refusal).
    ``scheme`` heads the Authorization header (Zoho's is ``Zoho-oauthtoken``).
    A 401 says the token is no good; ``is_invalid``, where given, tells which 401s do (Zoho's say INVALID_TOKEN in
    their body).

    The token in hand is used while it is fresh; the cache (another run's or process's token, perhaps) is asked
    only for a first token, one near expiry, or after a refusal.
    """

    requires_response_body = True

    def __init__(
        self,
        mint: Callable[[Token | None], Token],
        cache: TokenCache | None = None,
        *,
        early: timedelta = timedelta(minutes=5),
        scheme: str = "Bearer",
        is_invalid: Callable[[httpx.Response], bool] | None = None,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self._mint = mint
        self._cache = cache or MemoryTokenCache()
        self._early = early
        self._scheme = scheme
        self._is_invalid = is_invalid
        self._now = now
        self._lock = threading.Lock()
        self._current: Token | None = None
        self.minted = 0

    def token(self, *, force: bool = False, stale: Token | None = None) -> Token:
        """The token to use; minted when missing, near expiry or (with ``force``) refused."""
        held = self._current
        if not force and held is not None and held.fresh(self._now(), self._early):
            return held
        with self._lock:
            current = self._cache.load()
            if current and current.fresh(self._now(), self._early):
                # Another thread (or process) may already have replaced the token that was refused.
                if not force or (stale is not None and current.access_token != stale.access_token):
                    self._current = current
                    return current
            token = self._mint(current)
            self.minted += 1
            self._cache.save(token)
            self._current = token
            return token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self.token()
        request.headers["Authorization"] = f"{self._scheme} {token.access_token}"
        response = yield request
        if response.status_code == 401 and (self._is_invalid is None or self._is_invalid(response)):
            token = self.token(force=True, stale=token)
            request.headers["Authorization"] = f"{self._scheme} {token.access_token}"
            yield request


def entra_hints(system: str, client_id: str | None) -> dict[int, str]:
    """What to do about the AADSTS codes Entra ID most often refuses a client-credentials request with."""
    return {
        7000215: f"client secret refused; store the secret's value (not its id) with "
                 f"`mlconnector secrets set {system} client_secret`",
        7000222: f"client secret expired; create a new one and store it with "
                 f"`mlconnector secrets set {system} client_secret`",
        700016: f"client_id {client_id} is not an app registration in this tenant; check client_id and tenant",
        90002: "tenant not found; check tenant (the directory id or its domain)",
    }


def entra_token(http: Any, token_url: str, form: dict[str, str], system: str, hints: dict[int, str]) -> Token:
    """An access token from Entra ID's token endpoint (the client-credentials grant ``form`` names); a refusal
    is an AuthError saying what to fix (``hints``, by AADSTS code), a failing endpoint a RemoteError."""
    response = http.request("POST", token_url, data=form)
    body = json_body(response)
    if response.status_code == 200 and isinstance(body, dict) and body.get("access_token"):
        seconds = float(body.get("expires_in") or 3599)
        return Token(str(body["access_token"]), utcnow() + timedelta(seconds=seconds))
    if response.status_code >= 500 or not isinstance(body, dict):
        raise RemoteError(system, response.status_code, message=f"token endpoint {token_url} failed")
    codes = body.get("error_codes") or []
    code = int(codes[0]) if codes else 0
    error = str(body.get("error") or "error")
    raise AuthError(system, hints.get(code, f"Entra ID refused the token request ({error}, AADSTS{code})"))
