"""Windows authentication on the wire, as IIS does it for the GP Web Services endpoint: a 401 challenge
(``WWW-Authenticate: Negotiate`` and ``NTLM``), then the NTLM (or SPNEGO-wrapped NTLM) handshake, checked by
pyspnego's acceptor against the sandbox's domain accounts. A wrong password fails the handshake.

HTTP NTLM authenticates a TCP connection; over the network the pending handshake is kept per client address
and port. In-process (httpx's ASGI transport) every request has the same client address, so several handshakes
may be pending under one key: the final leg is tried against each of them and only the context that issued
that challenge accepts it (a failed try leaves the others intact).

Served over real sockets (``per_connection``, which ``mlconnector sandbox serve`` turns on), a connection stays
authenticated after its handshake, as IIS keeps Windows authentication for the connection: later requests on it
need no Authorization header, until the connection has been idle for IIS's connection timeout (120 s). The
client address and port name the connection (ASGI tells no more). In-process there are no connections to tell
apart, so every request there handshakes. The SBA routes authenticate every request on its own (``per_request``).
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

# pyspnego reads the acceptor's accounts from the file NTLM_USER_FILE names, a process-wide setting: it is
# pointed at this sandbox's file only while one of its contexts steps, under this lock.
_ENV_LOCK = threading.Lock()
PENDING_LIMIT = 64
PENDING_SECONDS = 120.0
IDLE_SECONDS = 120.0  # IIS's connectionTimeout: an idle connection is closed, and its authentication with it


@dataclass
class Verdict:
    """The outcome of checking one request: ``principal`` when accepted (with the server's last token, if any,
    for the 200's WWW-Authenticate), else the 401 headers to send."""

    principal: str | None = None
    final_token: str | None = None
    scheme: str = ""
    challenge: list[tuple[str, str]] | None = None


class WindowsAuth:
    """The domain accounts IIS knows and the handshakes in progress."""

    def __init__(self, schemes: tuple[str, ...] = ("Negotiate", "NTLM"), allow_basic: bool = False) -> None:
        self.schemes = schemes
        self.allow_basic = allow_basic
        self.accounts: dict[str, str] = {}  # "DOMAIN\\USER" (upper case) -> password
        self._pending: dict[Any, list[tuple[Any, str, float]]] = {}
        self.per_connection = False
        self._connections: dict[Any, tuple[str, str, float]] = {}  # client -> (principal, scheme, last used)
        self._lock = threading.Lock()
        handle, self._file = tempfile.mkstemp(prefix="gp-sandbox-ntlm-", suffix=".txt")
        os.close(handle)
        self.handshakes = 0

    def close(self) -> None:
        try:
            os.unlink(self._file)
        except OSError:
            pass

    def __del__(self) -> None:  # best effort: the file holds sandbox passwords only
        self.close()

    def set_account(self, account: str, password: str) -> None:
        """A domain account, ``DOMAIN\\user``. The credential file is colon-separated: no ':' in passwords."""
        if ":" in password or ":" in account:
            raise ValueError("the sandbox's NTLM account file cannot hold ':' in a name or password")
        self.accounts[account.upper()] = password
        lines = []
        for name, secret in self.accounts.items():
            domain, _, user = name.rpartition("\\")
            lines.append(f"{domain}:{user}:{secret}")
        with open(self._file, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")

    def challenge(self, allow_basic: bool | None = None) -> list[tuple[str, str]]:
        headers = [("WWW-Authenticate", scheme) for scheme in self.schemes]
        if self.allow_basic if allow_basic is None else allow_basic:
            headers.append(("WWW-Authenticate", 'Basic realm="GPServer"'))
        return headers

    def check(self, authorization: str, client: Any, allow_basic: bool | None = None,
              per_request: bool = False) -> Verdict:
        """``allow_basic`` overrides the server-wide setting for one service (SBA documents Basic);
        ``per_request``: the service authenticates every request on its own (SBA), not the connection."""
        basic = self.allow_basic if allow_basic is None else allow_basic
        if not per_request and not authorization.strip():
            known = self._on_connection(client)
            if known is not None:
                return known
        scheme, _, value = authorization.strip().partition(" ")
        scheme = scheme.capitalize() if scheme.lower() != "ntlm" else "NTLM"
        if scheme == "Basic" and basic:
            verdict = self._basic(value)
            return verdict if verdict.principal else Verdict(challenge=self.challenge(basic))
        if scheme not in self.schemes or not value:
            return Verdict(challenge=self.challenge(basic))
        try:
            token = base64.b64decode(value.strip(), validate=True)
        except (binascii.Error, ValueError):
            return Verdict(challenge=self.challenge(basic))
        if _is_first_leg(token):
            return self._start(scheme, token, client)
        return self._finish(scheme, token, client, per_request)

    def _basic(self, value: str) -> Verdict:
        try:
            user, _, password = base64.b64decode(value.strip()).decode("utf-8").partition(":")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return Verdict(challenge=self.challenge())
        expected = self.accounts.get(user.upper())
        if expected is None or not secrets.compare_digest(expected, password):
            return Verdict(challenge=self.challenge())
        return Verdict(principal=user.upper(), scheme="Basic")

    def _with_accounts(self, work: Any) -> Any:
        with _ENV_LOCK:
            previous = os.environ.get("NTLM_USER_FILE")
            os.environ["NTLM_USER_FILE"] = self._file
            try:
                return work()
            finally:
                if previous is None:
                    os.environ.pop("NTLM_USER_FILE", None)
                else:
                    os.environ["NTLM_USER_FILE"] = previous

    def _start(self, scheme: str, token: bytes, client: Any) -> Verdict:
        import spnego

        def step() -> tuple[Any, bytes | None]:
            context = spnego.server(protocol="negotiate" if scheme == "Negotiate" else "ntlm")
            return context, context.step(token)

        try:
            context, out = self._with_accounts(step)
        except Exception:  # noqa: BLE001 - any malformed first leg is just refused
            return Verdict(challenge=self.challenge())
        now = time.monotonic()
        with self._lock:
            pending = [p for p in self._pending.get(client, []) if now - p[2] < PENDING_SECONDS]
            pending.append((context, scheme, now))
            self._pending[client] = pending[-PENDING_LIMIT:]
        return Verdict(challenge=[("WWW-Authenticate", f"{scheme} {base64.b64encode(out or b'').decode()}")])

    def _finish(self, scheme: str, token: bytes, client: Any, per_request: bool = False) -> Verdict:
        with self._lock:
            candidates = [p for p in self._pending.get(client, []) if p[1] == scheme]
        for entry in candidates:
            context = entry[0]
            try:
                out = self._with_accounts(lambda: context.step(token))
            except Exception:  # noqa: BLE001 - wrong context or wrong password: try the next, then refuse
                continue
            if not context.complete:
                continue
            with self._lock:
                remaining = self._pending.get(client, [])
                if entry in remaining:
                    remaining.remove(entry)
            self.handshakes += 1
            final = base64.b64encode(out).decode() if out else None
            principal = str(context.client_principal or "").upper()
            if not per_request:
                self._remember(client, principal, scheme)
            return Verdict(principal=principal, final_token=final, scheme=scheme)
        return Verdict(challenge=self.challenge())

    def _remember(self, client: Any, principal: str, scheme: str) -> None:
        if not self.per_connection or client is None:
            return
        now = time.monotonic()
        with self._lock:
            for key in [k for k, (_, _, used) in self._connections.items() if now - used > IDLE_SECONDS]:
                del self._connections[key]
            self._connections[client] = (principal, scheme, now)

    def _on_connection(self, client: Any) -> Verdict | None:
        """The connection's principal, if a handshake authenticated it and it has not been idle too long."""
        if not self.per_connection or client is None:
            return None
        now = time.monotonic()
        with self._lock:
            known = self._connections.get(client)
            if known is None or now - known[2] > IDLE_SECONDS:
                self._connections.pop(client, None)
                return None
            self._connections[client] = (known[0], known[1], now)
        return Verdict(principal=known[0], scheme=known[1])


def _is_first_leg(token: bytes) -> bool:
    """An NTLM NEGOTIATE message (type 1) or a SPNEGO NegTokenInit (ASN.1 application tag 0x60)."""
    if token.startswith(b"NTLMSSP\x00"):
        return len(token) >= 12 and token[8] == 1
    return token[:1] == b"\x60"
