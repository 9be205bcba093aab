"""The shared HTTP layer: what is retried and how long we wait, what is given up on and how it is
reported, that every call is counted, and that a system never sees more requests at once than allowed.

No network: every client talks to an httpx.MockTransport, and waits are recorded, not slept.
"""

from __future__ import annotations

import email.utils
import json
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import httpx
import pytest

from tests.helpers import run_in_threads

from mlconnector.errors import EXIT_UNREACHABLE, RateLimited, RemoteError, Unreachable
from mlconnector.http import ApiClient, CallCounter, RetryPolicy, retry_after_seconds

BASE_URL = "https://erp.example.test/api/"

Handler = Callable[[httpx.Request], httpx.Response]


class Server:
    """A scripted fake API: answers come from a list (the last one repeats); every request is kept."""

    def __init__(self, *answers: httpx.Response | Exception | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers[min(len(self.requests), len(self.answers)) - 1]
        if isinstance(answer, Exception):
            raise answer
        if callable(answer):
            return answer(request)
        return answer

    @property
    def calls(self) -> int:
        return len(self.requests)


def make_client(server: Handler, **options) -> tuple[ApiClient, list[float]]:
    """A client on the fake transport whose sleep records each wait."""
    waits: list[float] = []
    options.setdefault("sleep", waits.append)
    client = ApiClient("erp", BASE_URL, transport=httpx.MockTransport(server), **options)
    return client, waits


def status(code: int, *, retry_after: str | None = None, body: object = None) -> httpx.Response:
    headers = {"Retry-After": retry_after} if retry_after is not None else {}
    return httpx.Response(code, headers=headers, json=body if body is not None else {"status": code})


def http_date(moment: datetime) -> str:
    return email.utils.format_datetime(moment.astimezone(timezone.utc), usegmt=True)


# --- Retry-After ---------------------------------------------------------------------------------

def test_429_with_retry_after_seconds_waits_that_long_then_succeeds() -> None:
    server = Server(status(429, retry_after="7"), status(200, body={"ok": True}))
    client, waits = make_client(server)

    response = client.request("GET", "customers")

    assert response.status_code == 200
    assert response.json() == {"ok": True}
    assert server.calls == 2
    assert waits == [7.0]


def test_429_with_retry_after_http_date_waits_until_that_moment() -> None:
    in_30s = datetime.now(timezone.utc) + timedelta(seconds=30)
    server = Server(status(429, retry_after=http_date(in_30s)), status(200))
    client, waits = make_client(server)

    assert client.request("GET", "customers").status_code == 200

    assert len(waits) == 1
    # HTTP dates have whole-second resolution, and a little time passes before the wait is computed.
    assert 27.0 <= waits[0] <= 30.0


def test_retry_after_date_in_the_past_means_retry_at_once() -> None:
    server = Server(status(429, retry_after="Wed, 21 Oct 2015 07:28:00 GMT"), status(200))
    client, waits = make_client(server)

    assert client.request("GET", "customers").status_code == 200
    assert waits == [0.0]


def test_retry_after_is_capped_at_the_policys_longest_wait() -> None:
    in_an_hour = datetime.now(timezone.utc) + timedelta(hours=1)
    server = Server(status(429, retry_after="3600"), status(503, retry_after=http_date(in_an_hour)), status(200))
    client, waits = make_client(server, retry=RetryPolicy(attempts=5, max_wait=10.0))

    assert client.request("GET", "customers").status_code == 200
    assert waits == [10.0, 10.0]


def test_retry_after_on_503_is_honoured_too() -> None:
    server = Server(status(503, retry_after="3"), status(200))
    client, waits = make_client(server)

    assert client.request("GET", "customers").status_code == 200
    assert waits == [3.0]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("0", 0.0),
        ("12", 12.0),
        ("1.5", 1.5),
        ("-4", 0.0),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:30 GMT", 30.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
    ],
)
def test_retry_after_seconds_reads_both_header_forms(header: str | None, expected: float | None) -> None:
    now = datetime(2015, 10, 21, 7, 28, 0, tzinfo=timezone.utc)
    headers = {"Retry-After": header} if header is not None else {}
    response = httpx.Response(429, headers=headers)

    assert retry_after_seconds(response, now=lambda: now) == expected


# --- what is retried, by method --------------------------------------------------------------------

def test_503_is_retried_for_post_and_the_same_body_is_sent_again() -> None:
    server = Server(status(503), status(503), status(201, body={"id": "C1"}))
    client, waits = make_client(server)

    response = client.request("POST", "customers", json={"name": "Contoso"})

    assert response.status_code == 201
    assert server.calls == 3
    assert [r.method for r in server.requests] == ["POST"] * 3
    assert all(json.loads(r.content) == {"name": "Contoso"} for r in server.requests)
    assert len(waits) == 2


def test_429_is_retried_for_post() -> None:
    server = Server(status(429, retry_after="1"), status(201))
    client, waits = make_client(server)

    assert client.request("POST", "customers", json={}).status_code == 201
    assert server.calls == 2
    assert waits == [1.0]


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "HEAD", "OPTIONS"])
def test_500_is_retried_for_idempotent_methods(method: str) -> None:
    server = Server(status(500), status(502), status(200))
    client, waits = make_client(server)

    assert client.request(method, "customers/C1").status_code == 200
    assert server.calls == 3
    assert len(waits) == 2


@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_500_is_not_retried_for_non_idempotent_methods_and_is_returned_as_is(method: str) -> None:
    server = Server(status(500, body={"error": "boom"}), status(200))
    client, waits = make_client(server)

    response = client.request(method, "customers", json={"name": "Contoso"})

    assert response.status_code == 500
    assert response.json() == {"error": "boom"}
    assert server.calls == 1
    assert waits == []


def test_idempotent_flag_overrides_the_method_rule() -> None:
    server = Server(status(500), status(200))
    client, _ = make_client(server)
    assert client.request("POST", "upsert", idempotent=True, json={}).status_code == 200
    assert server.calls == 2

    server = Server(status(500), status(200))
    client, _ = make_client(server)
    assert client.request("PUT", "counter/increment", idempotent=False).status_code == 500
    assert server.calls == 1


@pytest.mark.parametrize("code", [400, 401, 403, 404, 409, 412, 422])
def test_client_errors_are_returned_to_the_caller_untouched(code: int) -> None:
    server = Server(status(code), status(200))
    client, waits = make_client(server)

    assert client.request("GET", "customers/C1").status_code == code
    assert server.calls == 1
    assert waits == []


def test_500_that_persists_on_get_becomes_a_retryable_remote_error() -> None:
    server = Server(status(500))
    client, waits = make_client(server, retry=RetryPolicy(attempts=3))

    with pytest.raises(RemoteError) as caught:
        client.request("GET", "customers")

    assert not isinstance(caught.value, RateLimited)
    assert caught.value.status == 500
    assert caught.value.retryable is True
    assert caught.value.system == "erp"
    assert server.calls == 3
    assert len(waits) == 2


# --- transport errors ------------------------------------------------------------------------------

def test_connection_error_is_retried_and_the_request_then_succeeds() -> None:
    server = Server(httpx.ConnectError("refused"), httpx.ConnectError("refused"), status(200))
    client, waits = make_client(server)

    assert client.request("GET", "customers").status_code == 200
    assert server.calls == 3
    assert waits == [0.5, 1.0]


def test_connection_error_is_retried_even_for_post_since_nothing_reached_the_server() -> None:
    server = Server(httpx.ConnectError("refused"), status(201))
    client, _ = make_client(server)

    assert client.request("POST", "customers", json={}).status_code == 201
    assert server.calls == 2


def test_connection_error_after_all_attempts_is_unreachable_naming_the_base_url() -> None:
    server = Server(httpx.ConnectError("[Errno 111] Connection refused"))
    client, waits = make_client(server, retry=RetryPolicy(attempts=4))

    with pytest.raises(Unreachable) as caught:
        client.request("GET", "customers")

    message = str(caught.value)
    assert message.startswith("erp: ")
    assert BASE_URL in message
    assert "ConnectError" in message
    assert "4 tries" in message
    assert caught.value.system == "erp"
    assert caught.value.exit_code == EXIT_UNREACHABLE
    assert isinstance(caught.value.__cause__, httpx.ConnectError)
    assert server.calls == 4
    assert len(waits) == 3


def test_read_timeout_on_post_is_not_retried_and_says_it_may_have_been_applied() -> None:
    server = Server(httpx.ReadTimeout("timed out"), status(201))
    client, waits = make_client(server)

    with pytest.raises(Unreachable) as caught:
        client.request("POST", "customers", json={"name": "Contoso"})

    assert "ReadTimeout" in str(caught.value)
    assert "may or may not have been applied" in str(caught.value)
    assert server.calls == 1
    assert waits == []


def test_read_timeout_on_get_is_retried() -> None:
    server = Server(httpx.ReadTimeout("timed out"), status(200))
    client, waits = make_client(server)

    assert client.request("GET", "customers").status_code == 200
    assert server.calls == 2
    assert waits == [0.5]


# --- giving up on 429 ------------------------------------------------------------------------------

def test_429_that_persists_becomes_rate_limited_with_the_last_retry_after() -> None:
    server = Server(status(429, retry_after="5"))
    client, waits = make_client(server, retry=RetryPolicy(attempts=3))

    with pytest.raises(RateLimited) as caught:
        client.request("GET", "customers")

    assert caught.value.retry_after == 5.0
    assert caught.value.status == 429
    assert caught.value.system == "erp"
    assert caught.value.retryable is True
    assert "3 tries" in str(caught.value)
    assert server.calls == 3
    assert waits == [5.0, 5.0]


def test_429_without_retry_after_that_persists_has_no_retry_after() -> None:
    server = Server(status(429))
    client, _ = make_client(server, retry=RetryPolicy(attempts=2))

    with pytest.raises(RateLimited) as caught:
        client.request("POST", "customers", json={})

    assert caught.value.retry_after is None
    assert server.calls == 2


# --- backoff ---------------------------------------------------------------------------------------

def test_exponential_backoff_without_retry_after() -> None:
    server = Server(status(503))
    client, waits = make_client(server, retry=RetryPolicy(attempts=5, backoff=0.5, max_wait=120.0))

    with pytest.raises(RemoteError):
        client.request("GET", "customers")

    assert waits == [0.5, 1.0, 2.0, 4.0]


def test_exponential_backoff_is_capped_at_the_longest_wait() -> None:
    server = Server(status(503))
    client, waits = make_client(server, retry=RetryPolicy(attempts=6, backoff=1.0, max_wait=3.0))

    with pytest.raises(RemoteError):
        client.request("GET", "customers")

    assert waits == [1.0, 2.0, 3.0, 3.0, 3.0]


def test_a_single_attempt_policy_never_waits() -> None:
    server = Server(status(503))
    client, waits = make_client(server, retry=RetryPolicy(attempts=1))

    with pytest.raises(RemoteError):
        client.request("GET", "customers")
    assert server.calls == 1
    assert waits == []


# --- vendor hook -----------------------------------------------------------------------------------

def too_many_requests_in_body(response: httpx.Response) -> bool:
    return response.status_code == 200 and response.json().get("code") == "TOO_MANY_REQUESTS"


def test_is_retryable_hook_retries_a_200_that_says_too_many_requests() -> None:
    server = Server(status(200, body={"code": "TOO_MANY_REQUESTS"}), status(200, body={"data": [1]}))
    client, waits = make_client(server, is_retryable=too_many_requests_in_body)

    response = client.request("POST", "crm/v2/Accounts/upsert", json={"data": []})

    assert response.json() == {"data": [1]}
    assert server.calls == 2
    assert waits == [0.5]


def test_is_retryable_hook_leaves_other_answers_alone() -> None:
    server = Server(status(200, body={"data": []}))
    client, waits = make_client(server, is_retryable=too_many_requests_in_body)

    assert client.request("GET", "crm/v2/Accounts").json() == {"data": []}
    assert server.calls == 1
    assert waits == []


def test_is_retryable_hook_that_persists_gives_up_with_a_remote_error() -> None:
    server = Server(status(200, body={"code": "TOO_MANY_REQUESTS"}))
    client, _ = make_client(server, is_retryable=too_many_requests_in_body, retry=RetryPolicy(attempts=3))

    with pytest.raises(RemoteError) as caught:
        client.request("GET", "crm/v2/Accounts")
    assert caught.value.retryable is True
    assert server.calls == 3


# --- counting --------------------------------------------------------------------------------------

def test_every_attempt_is_counted_per_system() -> None:
    counter = CallCounter()
    erp_server = Server(status(503), httpx.ConnectError("refused"), status(200))
    crm_server = Server(status(200))
    erp, _ = make_client(erp_server, counter=counter)
    crm = ApiClient("crm", "https://crm.example.test/", transport=httpx.MockTransport(crm_server),
                    counter=counter, sleep=lambda s: None)

    erp.request("GET", "customers")
    crm.request("GET", "accounts")
    crm.request("GET", "accounts")

    assert counter.snapshot() == {"erp": 3, "crm": 2}


def test_failed_and_given_up_attempts_are_counted_too() -> None:
    counter = CallCounter()
    client, _ = make_client(Server(status(429)), counter=counter, retry=RetryPolicy(attempts=4))
    with pytest.raises(RateLimited):
        client.request("GET", "customers")

    client, _ = make_client(Server(httpx.ReadTimeout("slow")), counter=counter)
    with pytest.raises(Unreachable):
        client.request("POST", "customers", json={})

    assert counter.snapshot() == {"erp": 5}


def test_counter_since_gives_the_calls_made_after_a_snapshot() -> None:
    counter = CallCounter()
    counter.add("erp", 3)
    counter.add("crm")
    before = counter.snapshot()

    client, _ = make_client(Server(status(503), status(200)), counter=counter)
    client.request("GET", "customers")
    counter.add("zoho", 2)

    assert counter.since(before) == {"erp": 2, "zoho": 2}  # crm made no calls, so it is left out
    assert counter.since(counter.snapshot()) == {}
    assert before == {"erp": 3, "crm": 1}  # a snapshot is a copy, not a view


def test_counter_is_thread_safe() -> None:
    counter = CallCounter()

    def add_many() -> None:
        for _ in range(2000):
            counter.add("erp")

    threads = [threading.Thread(target=add_many) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counter.snapshot() == {"erp": 16000}


def test_each_client_has_a_counter_of_its_own_by_default() -> None:
    client, _ = make_client(Server(status(200)))
    client.request("GET", "customers")
    assert client.counter.snapshot() == {"erp": 1}


# --- concurrency -----------------------------------------------------------------------------------

class InFlightTracker:
    """A slow handler that records the most requests it ever had in flight at once."""

    def __init__(self, delay: float = 0.03) -> None:
        self.delay = delay
        self.in_flight = 0
        self.max_in_flight = 0
        self.calls = 0
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.in_flight += 1
            self.calls += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.delay)
        finally:
            with self._lock:
                self.in_flight -= 1
        return status(200)


def test_concurrency_limit_caps_requests_in_flight() -> None:
    tracker = InFlightTracker()
    client, _ = make_client(tracker, max_concurrency=2)

    errors = run_in_threads(8, lambda i: client.request("GET", f"customers/{i}"))

    assert errors == []
    assert tracker.calls == 8
    assert tracker.max_in_flight == 2  # reached, never exceeded


def test_without_a_tight_limit_requests_do_run_in_parallel() -> None:
    # Guards the test above: the tracker does see parallel requests when nothing limits them.
    tracker = InFlightTracker()
    client, _ = make_client(tracker, max_concurrency=8)

    assert run_in_threads(8, lambda i: client.request("GET", f"customers/{i}")) == []
    assert tracker.max_in_flight > 2


def test_a_request_waiting_out_a_retry_does_not_hold_a_slot() -> None:
    sleeping = threading.Event()
    other_done = threading.Event()

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/slow"):
            return status(429, retry_after="1") if not sleeping.is_set() else status(200)
        other_done.set()
        return status(200)

    def sleep(seconds: float) -> None:
        sleeping.set()
        assert other_done.wait(timeout=2), "the other request was blocked while this one slept"

    client, _ = make_client(handler, max_concurrency=1, sleep=sleep)
    errors: list[BaseException] = []

    def slow() -> None:
        try:
            assert client.request("GET", "slow").status_code == 200
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    thread = threading.Thread(target=slow)
    thread.start()
    assert sleeping.wait(timeout=2)
    assert client.request("GET", "fast").status_code == 200
    thread.join(timeout=5)
    assert errors == []


def test_max_concurrency_below_one_still_allows_one_request() -> None:
    client, _ = make_client(Server(status(200)), max_concurrency=0)
    assert client.request("GET", "customers").status_code == 200


# --- the client itself ---------------------------------------------------------------------------

def test_base_url_headers_and_no_redirects() -> None:
    server = Server(httpx.Response(302, headers={"Location": "https://elsewhere.test/"}))
    client, _ = make_client(server, headers={"Accept": "application/json", "X-Tenant": "t1"})

    response = client.request("get", "customers?$top=5")

    assert client.base_url == BASE_URL
    assert response.status_code == 302  # a redirect is the caller's business, not followed blindly
    assert server.calls == 1
    sent = server.requests[0]
    assert sent.method == "GET"
    assert str(sent.url).startswith(BASE_URL + "customers")
    assert sent.headers["X-Tenant"] == "t1"
    client.close()


def test_last_member_finds_a_trailing_link_only_where_it_is_the_objects_last_member():
    from mlconnector.http import last_member
    page = '{"@odata.context":"x","value":[{"a":"@odata.nextLink"}],"@odata.nextLink" : "http://h/p?$skiptoken=\\"q\\"" }'
    assert last_member(page, "@odata.nextLink") == 'http://h/p?$skiptoken="q"'  # as JSON decodes it
    assert last_member('{"value":[],"@odata.nextLink":"u","more":1}', "@odata.nextLink") is None
    assert last_member('{"@odata.nextLink":"u","value":[]}', "@odata.nextLink") is None
    assert last_member('{"value":[{"x":"y"}]}', "@odata.nextLink") is None
    assert last_member('{"value":[],"@odata.nextLink":null}', "@odata.nextLink") is None


def test_json_bodies_read_and_written_as_httpx_would() -> None:
    from mlconnector.http import json_body, json_content

    value = {"data": [{"Account_Name": "Zoë ☃", "n": 3, "x": 0.5, "ok": True, "none": None}]}
    assert json_content(value) == httpx.Request("POST", "http://x", json=value).content
    assert json_content({"big": 2**70}) == b'{"big":1180591620717411303424}'   # beyond orjson: the standard encoder
    assert json_body(httpx.Response(200, content=json_content(value))) == value
    assert json_body(httpx.Response(200, content=b'{"v": NaN}'))["v"] != 0           # NaN: as httpx reads it
    assert json_body(httpx.Response(502, content=b"<html>bad gateway</html>")) is None
    assert json_body(httpx.Response(204)) is None


def test_clients_share_one_tls_context_that_verifies_certificates() -> None:
    """Loading the CA bundle once per process, not per client (a run opens several); verification stays on."""
    import ssl

    first = ApiClient("zoho", "https://www.zohoapis.com")
    second = ApiClient("bc", "https://api.businesscentral.dynamics.com")
    try:
        contexts = [client.client._transport._pool._ssl_context for client in (first, second)]
        assert contexts[0] is contexts[1]
        assert contexts[0].verify_mode == ssl.CERT_REQUIRED and contexts[0].check_hostname
    finally:
        first.close()
        second.close()
