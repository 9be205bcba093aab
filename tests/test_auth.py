"""Token auth: a token is minted once and reused while fresh, refreshed early, refreshed once (never in a
loop) when refused, minted once however many threads race for it, and cached across runs in the secret
store without ever being printed.

No network: requests go to an httpx.MockTransport; the clock is injected.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import httpx
import keyring
import pytest

from tests.helpers import run_in_threads
from keyring.backends import fail

from mlconnector.auth import MemoryTokenCache, SecretTokenCache, Token, TokenAuth
from mlconnector.errors import AuthError, SecretStoreError
from mlconnector.http import ApiClient, CallCounter
from mlconnector.secrets import SERVICE, SecretStore

START = datetime(2024, 3, 1, 12, 0, tzinfo=timezone.utc)
LIFETIME = timedelta(hours=1)


class Clock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Minter:
    """The system's token endpoint: hands out tok-1, tok-2 ... and remembers what it was given."""

    def __init__(self, clock: Callable[[], datetime], lifetime: timedelta = LIFETIME, delay: float = 0.0) -> None:
        self.clock = clock
        self.lifetime = lifetime
        self.delay = delay
        self.given: list[Token | None] = []
        self._lock = threading.Lock()

    def __call__(self, previous: Token | None) -> Token:
        if self.delay:
            time.sleep(self.delay)  # widens the window in which racing threads could mint twice
        with self._lock:
            self.given.append(previous)
            n = len(self.given)
        return Token(f"tok-{n}", self.clock() + self.lifetime, {"api_domain": "https://www.zohoapis.eu"})

    @property
    def count(self) -> int:
        return len(self.given)


class Api:
    """A fake API that accepts only the tokens listed in ``valid`` (all of them when None)."""

    def __init__(self, valid: set[str] | None = None,
                 refusal: Callable[[], httpx.Response] = lambda: httpx.Response(401, json={"code": "INVALID_TOKEN"})
                 ) -> None:
        self.valid = valid
        self.refusal = refusal
        self.seen: list[str] = []
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        header = request.headers.get("Authorization", "")
        with self._lock:
            self.seen.append(header)
        token = header.split(" ", 1)[-1]
        if self.valid is not None and token not in self.valid:
            return self.refusal()
        return httpx.Response(200, json={"data": [{"id": "1"}]})


def client_for(auth: httpx.Auth, api: Callable[[httpx.Request], httpx.Response]) -> httpx.Client:
    return httpx.Client(base_url="https://api.example.test/", auth=auth, transport=httpx.MockTransport(api))


def body_code(response: httpx.Response) -> str | None:
    try:
        return response.json().get("code")
    except (ValueError, AttributeError):
        return None


# --- minting and reuse -----------------------------------------------------------------------------

def test_token_is_minted_once_and_reused_while_fresh() -> None:
    clock = Clock()
    mint = Minter(clock)
    auth = TokenAuth(mint, now=clock)
    api = Api()
    client = client_for(auth, api)

    for _ in range(3):
        assert client.get("customers").status_code == 200
        clock.advance(minutes=10)

    assert mint.count == 1
    assert auth.minted == 1
    assert mint.given == [None]
    assert api.seen == ["Bearer tok-1"] * 3


def test_token_is_minted_again_within_early_of_expiry() -> None:
    clock = Clock()
    mint = Minter(clock)
    auth = TokenAuth(mint, now=clock, early=timedelta(minutes=5))
    api = Api()
    client = client_for(auth, api)

    client.get("customers")
    clock.advance(minutes=54, seconds=59)  # 5 min 1 s left: still fresh
    client.get("customers")
    assert mint.count == 1

    clock.advance(seconds=2)  # 4 min 59 s left: inside the early margin
    client.get("customers")

    assert mint.count == 2
    assert api.seen == ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"]
    # The minter is handed the old token (a refresh flow may need it).
    assert mint.given[1] is not None and mint.given[1].access_token == "tok-1"


def test_expired_token_is_replaced_before_the_request_is_sent() -> None:
    clock = Clock()
    cache = MemoryTokenCache()
    cache.save(Token("old", START - timedelta(seconds=1)))
    mint = Minter(clock)
    api = Api(valid={"tok-1"})

    response = client_for(TokenAuth(mint, cache, now=clock), api).get("customers")

    assert response.status_code == 200
    assert api.seen == ["Bearer tok-1"]  # the expired token was never sent
    assert cache.load() is not None and cache.load().access_token == "tok-1"


def test_custom_header_format() -> None:
    clock = Clock()
    api = Api()
    auth = TokenAuth(Minter(clock), now=clock, scheme="Zoho-oauthtoken")

    client_for(auth, api).get("crm/v2/Accounts")

    assert api.seen == ["Zoho-oauthtoken tok-1"]


def test_mint_refusal_propagates_to_the_caller() -> None:
    def refuse(previous: Token | None) -> Token:
        raise AuthError("zoho", "invalid_client: check the client id and secret")

    api = Api()
    with pytest.raises(AuthError, match="invalid_client"):
        client_for(TokenAuth(refuse), api).get("customers")
    assert api.seen == []  # nothing was sent without a token


# --- refused tokens: refresh once, resend once -------------------------------------------------------

def test_401_mints_once_and_resends_once() -> None:
    clock = Clock()
    mint = Minter(clock)
    api = Api(valid={"tok-2"})  # the server revoked tok-1 early
    auth = TokenAuth(mint, now=clock)

    response = client_for(auth, api).get("customers")

    assert response.status_code == 200
    assert api.seen == ["Bearer tok-1", "Bearer tok-2"]
    assert mint.count == 2
    assert mint.given[1] is not None and mint.given[1].access_token == "tok-1"


def test_a_second_401_is_returned_to_the_caller_without_looping() -> None:
    clock = Clock()
    mint = Minter(clock)
    api = Api(valid=set())  # every token is refused
    auth = TokenAuth(mint, now=clock)

    response = client_for(auth, api).get("customers")

    assert response.status_code == 401
    assert mint.count == 2
    assert len(api.seen) == 2
    assert api.seen == ["Bearer tok-1", "Bearer tok-2"]


def test_after_a_refresh_the_new_token_is_reused() -> None:
    clock = Clock()
    mint = Minter(clock)
    api = Api(valid={"tok-2"})
    client = client_for(TokenAuth(mint, now=clock), api)

    client.get("customers")
    client.get("customers")

    assert mint.count == 2
    assert api.seen == ["Bearer tok-1", "Bearer tok-2", "Bearer tok-2"]


def test_a_post_body_is_resent_with_the_new_token() -> None:
    clock = Clock()
    bodies: list[tuple[str, bytes]] = []

    def api(request: httpx.Request) -> httpx.Response:
        bodies.append((request.headers["Authorization"], request.content))
        ok = request.headers["Authorization"] == "Bearer tok-2"
        return httpx.Response(201 if ok else 401)

    response = client_for(TokenAuth(Minter(clock), now=clock), api).post("customers", json={"name": "Contoso"})

    assert response.status_code == 201
    assert [auth for auth, _ in bodies] == ["Bearer tok-1", "Bearer tok-2"]
    assert bodies[0][1] == bodies[1][1] == b'{"name":"Contoso"}'


def test_other_error_statuses_do_not_trigger_a_refresh() -> None:
    clock = Clock()
    mint = Minter(clock)
    calls: list[str] = []

    def api(request: httpx.Request) -> httpx.Response:
        calls.append(request.headers["Authorization"])
        return httpx.Response(403, json={"code": "NO_PERMISSION"})

    response = client_for(TokenAuth(mint, now=clock), api).get("customers")

    assert response.status_code == 403
    assert mint.count == 1
    assert len(calls) == 1


def test_custom_is_invalid_recognises_invalid_token_in_the_body() -> None:
    clock = Clock()
    mint = Minter(clock)
    api = Api(valid={"tok-2"}, refusal=lambda: httpx.Response(401, json={"code": "INVALID_TOKEN", "status": "error"}))
    auth = TokenAuth(mint, now=clock, is_invalid=lambda r: body_code(r) == "INVALID_TOKEN")

    response = client_for(auth, api).get("crm/v2/Accounts")

    assert response.status_code == 200
    assert response.json() == {"data": [{"id": "1"}]}
    assert mint.count == 2
    assert api.seen == ["Bearer tok-1", "Bearer tok-2"]


def test_custom_is_invalid_replaces_the_401_default() -> None:
    # A 401 that is not about the token (say, a missing scope reported as 401) is not retried when
    # the system's own rule says so.
    clock = Clock()
    mint = Minter(clock)
    api = Api(valid=set(), refusal=lambda: httpx.Response(401, json={"code": "OAUTH_SCOPE_MISMATCH"}))
    auth = TokenAuth(mint, now=clock, is_invalid=lambda r: body_code(r) == "INVALID_TOKEN")

    response = client_for(auth, api).get("crm/v2/Accounts")

    assert response.status_code == 401
    assert mint.count == 1
    assert len(api.seen) == 1


def test_custom_is_invalid_persisting_is_returned_after_one_resend() -> None:
    clock = Clock()
    mint = Minter(clock)
    api = Api(valid=set(), refusal=lambda: httpx.Response(401, json={"code": "INVALID_TOKEN"}))
    auth = TokenAuth(mint, now=clock, is_invalid=lambda r: body_code(r) == "INVALID_TOKEN")

    response = client_for(auth, api).get("crm/v2/Accounts")

    assert response.json() == {"code": "INVALID_TOKEN"}
    assert mint.count == 2
    assert len(api.seen) == 2


def test_refresh_and_resend_through_the_api_client_are_counted_as_calls() -> None:
    clock = Clock()
    mint = Minter(clock)
    api = Api(valid={"tok-2"})
    counter = CallCounter()
    client = ApiClient("zoho", "https://api.example.test/", auth=TokenAuth(mint, now=clock),
                       transport=httpx.MockTransport(api), counter=counter, sleep=lambda s: None)

    assert client.request("GET", "customers").status_code == 200
    assert mint.count == 2
    assert len(api.seen) == 2
    # The refused request and its resend both reached the system, so both count against its quota.
    assert counter.snapshot() == {"zoho": 2}


# --- threads -------------------------------------------------------------------------------------

def test_threads_racing_on_an_expired_token_mint_only_once() -> None:
    clock = Clock()
    cache = MemoryTokenCache()
    cache.save(Token("expired", START - timedelta(minutes=1)))
    mint = Minter(clock, delay=0.05)
    api = Api(valid={"tok-1"})
    client = client_for(TokenAuth(mint, cache, now=clock), api)

    errors = run_in_threads(8, lambda i: client.get(f"customers/{i}"))

    assert errors == []
    assert mint.count == 1
    assert api.seen == ["Bearer tok-1"] * 8


def test_threads_refused_with_the_same_token_mint_only_once() -> None:
    # All threads send tok-1 and are refused together; the first to get the lock mints tok-2, and the
    # others see that the refused token was already replaced (the stale-token check) and reuse tok-2.
    clock = Clock()
    mint = Minter(clock, delay=0.02)
    auth = TokenAuth(mint, now=clock)
    auth.token()  # tok-1 is cached before the threads start
    threads = 8
    all_sent = threading.Barrier(threads)
    seen: list[str] = []
    lock = threading.Lock()

    def api(request: httpx.Request) -> httpx.Response:
        header = request.headers["Authorization"]
        with lock:
            seen.append(header)
        if header == "Bearer tok-1":
            all_sent.wait(timeout=5)  # every thread holds tok-1 before any is refused
            return httpx.Response(401)
        return httpx.Response(200)

    client = client_for(auth, api)
    statuses: list[int] = []
    errors = run_in_threads(threads, lambda i: statuses.append(client.get(f"customers/{i}").status_code))

    assert errors == []
    assert statuses == [200] * threads
    assert mint.count == 2
    assert sorted(seen) == ["Bearer tok-1"] * threads + ["Bearer tok-2"] * threads


def test_forced_refresh_without_a_stale_token_always_mints() -> None:
    clock = Clock()
    mint = Minter(clock)
    auth = TokenAuth(mint, now=clock)

    first = auth.token()
    assert auth.token() is first
    assert auth.token(force=True).access_token == "tok-2"
    assert auth.token(force=True, stale=first).access_token == "tok-2"  # tok-1 already replaced
    assert auth.token(force=True, stale=auth.token()).access_token == "tok-3"
    assert auth.minted == mint.count == 3


# --- caching across runs in the secret store -------------------------------------------------------

def test_secret_token_cache_lets_the_next_run_reuse_the_token(isolated) -> None:
    clock = Clock()
    mint = Minter(clock)
    api = Api()

    first_run = TokenAuth(mint, SecretTokenCache(SecretStore(), "zoho"), now=clock)
    client_for(first_run, api).get("customers")

    raw = isolated.passwords[(SERVICE, "zoho:access_token_cache")]
    stored = json.loads(raw)
    assert stored["access_token"] == "tok-1"
    assert stored["extra"] == {"api_domain": "https://www.zohoapis.eu"}

    clock.advance(minutes=20)
    second_run = TokenAuth(mint, SecretTokenCache(SecretStore(), "zoho"), now=clock)
    client_for(second_run, api).get("customers")

    assert mint.count == 1
    assert second_run.minted == 0
    assert api.seen == ["Bearer tok-1", "Bearer tok-1"]


def test_a_token_an_earlier_run_kept_is_read_from_the_store_once_not_on_every_request() -> None:
    class CountingStore:
        """A secret store that counts its reads (the file store decrypts its file on each)."""

        def __init__(self) -> None:
            self.values: dict[tuple[str, str], str] = {}
            self.reads = 0

        def get(self, system: str, field: str) -> str | None:
            self.reads += 1
            return self.values.get((system, field))

        def set(self, system: str, field: str, value: str) -> None:
            self.values[(system, field)] = value

    clock = Clock()
    store = CountingStore()
    SecretTokenCache(store, "zoho").save(Token("kept", START + LIFETIME))
    mint = Minter(clock)
    api = Api()
    client = client_for(TokenAuth(mint, SecretTokenCache(store, "zoho"), now=clock), api)

    for n in range(3):
        client.get(f"customers/{n}")

    assert api.seen == ["Bearer kept"] * 3 and mint.count == 0
    assert store.reads == 1


def test_secret_token_cache_roundtrip_keeps_expiry_and_extra() -> None:
    token = Token("abc", START + LIFETIME, {"api_domain": "https://www.zohoapis.com", "scope": "ZohoCRM.modules.ALL"})
    SecretTokenCache(SecretStore(), "zoho").save(token)

    loaded = SecretTokenCache(SecretStore(), "zoho").load()

    assert loaded == token
    assert loaded is not None and loaded.expires_at.tzinfo is not None


def test_next_run_mints_when_the_cached_token_has_expired() -> None:
    clock = Clock()
    mint = Minter(clock)
    api = Api()
    client_for(TokenAuth(mint, SecretTokenCache(SecretStore(), "zoho"), now=clock), api).get("customers")

    clock.advance(hours=2)
    cache = SecretTokenCache(SecretStore(), "zoho")
    client_for(TokenAuth(mint, cache, now=clock), api).get("customers")

    assert mint.count == 2
    assert api.seen == ["Bearer tok-1", "Bearer tok-2"]
    assert SecretTokenCache(SecretStore(), "zoho").load().access_token == "tok-2"


def test_token_caches_are_kept_per_system() -> None:
    SecretTokenCache(SecretStore(), "zoho").save(Token("zoho-token", START + LIFETIME))
    SecretTokenCache(SecretStore(), "bc").save(Token("bc-token", START + LIFETIME))

    assert SecretTokenCache(SecretStore(), "zoho").load().access_token == "zoho-token"
    assert SecretTokenCache(SecretStore(), "bc").load().access_token == "bc-token"
    assert SecretTokenCache(SecretStore(), "zuora").load() is None


def test_clear_removes_the_token_from_memory_and_the_store(isolated) -> None:
    cache = SecretTokenCache(SecretStore(), "zoho")
    cache.save(Token("abc", START + LIFETIME))
    cache.clear()

    assert cache.load() is None
    assert SecretTokenCache(SecretStore(), "zoho").load() is None
    assert (SERVICE, "zoho:access_token_cache") not in isolated.passwords


def test_a_corrupt_cached_token_is_ignored_and_a_new_one_minted() -> None:
    SecretStore().set("zoho", SecretTokenCache.FIELD, "{not json")
    clock = Clock()
    mint = Minter(clock)
    api = Api()

    client_for(TokenAuth(mint, SecretTokenCache(SecretStore(), "zoho"), now=clock), api).get("customers")

    assert mint.count == 1
    assert SecretTokenCache(SecretStore(), "zoho").load().access_token == "tok-1"


class BrokenStore:
    """A secret store that cannot be read or written (locked keyring, env-only container)."""

    def __init__(self) -> None:
        self.attempts = 0

    def get(self, system: str, field: str) -> str | None:
        self.attempts += 1
        raise SecretStoreError("no usable place to keep secrets")

    def set(self, system: str, field: str, value: str) -> None:
        self.attempts += 1
        raise SecretStoreError("no usable place to keep secrets")

    def delete(self, system: str, field: str | None = None) -> list[str]:
        self.attempts += 1
        raise SecretStoreError("no usable place to keep secrets")


def test_secret_token_cache_degrades_to_memory_when_the_store_fails() -> None:
    clock = Clock()
    mint = Minter(clock)
    api = Api()
    store = BrokenStore()
    cache = SecretTokenCache(store, "zoho")
    client = client_for(TokenAuth(mint, cache, now=clock), api)

    client.get("customers")
    client.get("customers")

    assert mint.count == 1  # kept in memory for the rest of the run
    assert api.seen == ["Bearer tok-1", "Bearer tok-1"]
    assert store.attempts >= 2  # it did try the store
    cache.clear()  # does not raise either
    assert cache.load() is None


def test_secret_token_cache_degrades_to_memory_without_any_keyring_or_key_file() -> None:
    keyring.set_keyring(fail.Keyring())  # the isolating fixture restores the keyring afterwards
    store = SecretStore()
    with pytest.raises(SecretStoreError):
        store.get("zoho", SecretTokenCache.FIELD)  # the real store really has nowhere to keep it

    clock = Clock()
    mint = Minter(clock)
    api = Api()
    client = client_for(TokenAuth(mint, SecretTokenCache(store, "zoho"), now=clock), api)
    client.get("customers")
    client.get("customers")

    assert mint.count == 1
    assert api.seen == ["Bearer tok-1", "Bearer tok-1"]


# --- the token never shows up in output --------------------------------------------------------------

def test_token_repr_and_str_never_show_the_access_token() -> None:
    token = Token("s3cr3t-access-token", START + LIFETIME, {"api_domain": "https://www.zohoapis.eu"})

    for shown in (repr(token), str(token), f"{token}", f"{token!r}", repr([token]), repr({"t": token})):
        assert "s3cr3t-access-token" not in shown
    assert "expires_at" in repr(token)  # still useful when debugging


def test_token_freshness_boundary() -> None:
    token = Token("abc", START + LIFETIME)
    early = timedelta(minutes=5)

    assert token.fresh(START, early)
    assert token.fresh(START + LIFETIME - early - timedelta(microseconds=1), early)
    assert not token.fresh(START + LIFETIME - early, early)
    assert not token.fresh(START + LIFETIME + timedelta(seconds=1), timedelta(0))
