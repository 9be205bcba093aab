"""Which secrets each kind of system reads, which a user may set, the environment variable that overrides each
one, and what marks a setting's name as a secret's (config files and URLs must carry none)."""

from __future__ import annotations

import re

ENV_PREFIX = "MLCONNECTOR_"

# The secret fields each kind of system needs; `secrets set SYSTEM` prompts for all of them.
KNOWN_FIELDS: dict[str, tuple[str, ...]] = {
    "zoho": ("client_id", "client_secret", "refresh_token"),
    "bc": ("client_secret",),
    "nav": ("password",),
    "finops": ("client_secret",),
    "gp": ("password",),
    "zuora": ("client_secret",),
    "state": ("password",),  # the PostgreSQL state database's ([state] url), stored as system "state"
}
# Every field a kind reads that a user may set (a typo such as `pasword` is refused, not stored unused). Kinds not
# listed here (plugins) take any field.
SETTABLE_FIELDS: dict[str, tuple[str, ...]] = {
    **KNOWN_FIELDS,
    "bc": ("client_secret", "password"),        # Entra apps; on-premises Basic or Windows
    "nav": ("password", "client_secret"),       # the web service access key or password; API mode with Entra
    "zuora": ("client_secret", "callout_password", "callout_secret"),
}


def field_for(kind: str | None, key: str) -> str:
    """The secret field a key found in the configuration most likely meant, for the message that refuses it."""
    allowed = SETTABLE_FIELDS.get(kind or "")
    if not allowed or key in allowed:
        return key
    lowered = key.lower()
    for hint, field in (("pass", "password"), ("pwd", "password"), ("accesskey", "password"),
                        ("secret", "client_secret"), ("token", "refresh_token")):
        if hint in lowered and field in allowed:
            return field
    return allowed[0]


def env_var_name(system: str, field: str) -> str:
    """The environment variable that overrides one secret, e.g. ``MLCONNECTOR_ZOHO_CLIENT_SECRET``."""
    return f"{ENV_PREFIX}{_env_part(system)}_{_env_part(field)}"


def env_var_names(system: str, field: str, prefix: str | None) -> list[str]:
    """The variables that may hold one secret, the first set wins: for a tenant (``prefix``: ``ACME_``) its own
    (``MLCONNECTOR_ACME_ZOHO_CLIENT_SECRET``), then the plain one (an environment of the tenant's alone)."""
    plain = env_var_name(system, field)
    return [f"{ENV_PREFIX}{prefix}{plain.removeprefix(ENV_PREFIX)}", plain] if prefix else [plain]


def _env_part(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "_", name).upper()


# What marks a key as holding a secret, whatever its spelling (snake_case, camelCase, run together). Such values
# belong in the keyring, never in the file. A part anywhere in the name ("webServiceAccessKey", "private_key_pem"),
# a word anywhere ("token_value") unless the last word says the key names something else ("token_url",
# "account_key_field").
_SECRET_PARTS = ("password", "passwd", "passphrase", "secret", "accesskey", "apikey", "privatekey", "credential",
                 "signingkey", "masterkey", "sharedkey")
_SECRET_WORDS = {"pwd", "token", "key", "pem"}
_NAMING_WORDS = {"url", "uri", "endpoint", "field", "fields", "name", "names", "header", "type", "types", "id", "ids",
                 "path", "ttl", "hours", "seconds", "mode", "user", "style", "prefix", "kind"}
# Settings whose name looks like a secret's but that name a property or a way of doing things.
_NOT_SECRETS = {"sba_list_key"}


def is_secret_key(name: str) -> bool:
    if name in _NOT_SECRETS:
        return False
    words = [w for w in re.split(r"[^a-z0-9]+", re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()) if w]
    if not words or words[-1] in _NAMING_WORDS:
        return False
    joined = "".join(words)
    return any(part in joined for part in _SECRET_PARTS) or any(word in _SECRET_WORDS for word in words)
