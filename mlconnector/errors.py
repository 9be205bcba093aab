"""Error types. Each carries the exit code the CLI turns it into; messages say what to do about it."""

from __future__ import annotations

# Exit codes, for cron (README and `mlconnector --help` list them too).
EXIT_OK = 0
EXIT_BUG = 1
EXIT_CONFIG = 2
EXIT_RECORDS_FAILED = 3
EXIT_AUTH = 4
EXIT_UNREACHABLE = 5
EXIT_DISAGREE = 6  # `reconcile`: the two systems do not agree
# `status --check`: what needs a look (with several problems, the lowest code of those found).
EXIT_CHECK_RUN = 10       # a pair's last run failed, stopped early or was interrupted
EXIT_CHECK_STALE = 11     # a pair has not run within --max-age (or never has)
EXIT_CHECK_REPLAY = 12    # records have waited in the replay queue longer than --replay-age
EXIT_CHECK_CHANNEL = 13   # a push channel failed to renew, or expires within the hour
EXIT_CHECK_DISAGREE = 14  # the pair's last `reconcile` found the systems disagreeing
EXIT_LOCKED = 75


class MLConnectorError(Exception):
    """Base of every error the tool expects; anything else is a bug (exit 1)."""

    exit_code = EXIT_BUG


class ConfigError(MLConnectorError):
    """connections.toml, a command-line value or a missing secret is wrong; the message names the fix."""

    exit_code = EXIT_CONFIG


class SecretStoreError(ConfigError):
    """No usable place to keep secrets, or the encrypted file cannot be opened."""


class AuthError(MLConnectorError):
    """Credentials were refused by a system."""

    exit_code = EXIT_AUTH

    def __init__(self, system: str, message: str) -> None:
        super().__init__(f"{system}: {message}")
        self.system = system


class Unreachable(MLConnectorError):
    """A system could not be reached (DNS, refused connection, timeout, repeated 5xx)."""

    exit_code = EXIT_UNREACHABLE

    def __init__(self, system: str, message: str) -> None:
        super().__init__(f"{system}: {message}")
        self.system = system


class LockHeld(MLConnectorError):
    """Another run of the same pair holds the lock."""

    exit_code = EXIT_LOCKED


class RemoteError(MLConnectorError):
    """A system answered with an error. ``retryable`` says whether the same call may later succeed."""

    exit_code = EXIT_UNREACHABLE

    def __init__(self, system: str, status: int, code: str = "", message: str = "",
                 retryable: bool = False) -> None:
        detail = f"{code}: {message}" if code and message else (code or message or "error")
        super().__init__(f"{system} answered HTTP {status} ({detail})")
        self.system = system
        self.status = status
        self.code = code
        self.message = message
        self.retryable = retryable


class RateLimited(RemoteError):
    """429 (or a vendor's equivalent) that persisted through our retries."""

    def __init__(self, system: str, retry_after: float | None = None, code: str = "TOO_MANY_REQUESTS",
                 message: str = "rate limited") -> None:
        super().__init__(system, 429, code, message, retryable=True)
        self.retry_after = retry_after


class RecordError(MLConnectorError):
    """One record cannot be synced (bad data, rejected by the target); it goes to the replay queue."""

    def __init__(self, message: str, error_class: str = "record") -> None:
        super().__init__(message)
        self.error_class = error_class


class UnresolvedReference(RecordError):
    """A record refers to another (a customer, an item) that is not yet linked in the target."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "unresolved_reference")


class BudgetExhausted(MLConnectorError):
    """Going on would cross the configured daily API-credit budget; the run stops cleanly."""

    exit_code = EXIT_RECORDS_FAILED


class NotificationRejected(MLConnectorError):
    """A push notification failed verification (bad token or clientState, malformed body).

    ``status`` is what the receiver answers: 401/403 for a bad credential, 400 for a malformed body;
    ``headers`` go with that answer (a Basic ``WWW-Authenticate`` challenge, which Zuora callouts wait for).
    """

    def __init__(self, message: str, status: int = 403, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.headers = dict(headers or {})
