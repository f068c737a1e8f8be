"""Keep secrets out of everything we record: W&B configs, stored configs, logs.

Configs are recorded verbatim in several places, so a password typed into a store URL or an
API key put into the config would leak; `redact` returns a copy that is safe to record.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

REDACTED = "***REDACTED***"
SECRET_KEY_PARTS = (
    "api_key",
    "apikey",
    "password",
    "secret",
    "token",
    "credential",
    "private_key",
)

# scheme://user:password@host -> scheme://user:***@host (the password may itself hold '@').
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s]*):([^/\s]*)@")


def is_secret_key(key: object) -> bool:
    """A key whose value is a secret; `*_env` keys only name the variable holding one."""
    name = str(key).lower()
    if name.endswith("_env"):
        return False
    return any(part in name for part in SECRET_KEY_PARTS)


def redact_url(text: str) -> str:
    """Mask the password part of every `scheme://user:password@host` in a string."""
    return _URL_PASSWORD.sub(r"\1:***@", text)


def redact(obj: Any) -> Any:
    """A deep copy of `obj` with secret-looking values and URL passwords masked.

    Values under secret keys become "***REDACTED***" (None and "" stay, as they hold no
    secret and show that nothing was set); strings anywhere have URL passwords masked.
    """
    if isinstance(obj, Mapping):
        out: dict[Any, Any] = {}
        for key, value in obj.items():
            if is_secret_key(key) and value is not None and value != "":
                out[key] = REDACTED
            else:
                out[key] = redact(value)
        return out
    if isinstance(obj, str):
        return redact_url(obj)
    if isinstance(obj, tuple):
        return tuple(redact(v) for v in obj)
    if isinstance(obj, Sequence) and not isinstance(obj, bytes | bytearray):
        return [redact(v) for v in obj]  # lists, and list-likes such as OmegaConf's ListConfig
    return copy.deepcopy(obj)


_SECRET_IN_VALUE = re.compile(r"(?i)(?:^|[{,\s])['\"]?([a-z0-9_]*(?:" + "|".join(SECRET_KEY_PARTS)
                              + r")[a-z0-9_]*)['\"]?\s*:\s*(?![\s,}]|null\b|\"\"|'')")


def secret_override_error(overrides: Sequence[str]) -> str | None:
    """Why a command-line override would record a secret, or None.

    Hydra writes every override to `.hydra/` before the run starts, so a password typed on the
    command line would be on disk even though the config check refuses it a moment later.
    """
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep:
            continue
        key = key.lstrip("+~").split("@")[0]
        last = key.rsplit(".", 1)[-1]
        if is_secret_key(last) and value.strip() not in ("", "null"):
            return (f"{key}: a secret on the command line would be recorded in .hydra/; put it "
                    "in an environment variable and give the variable's NAME instead "
                    "(password_env, api_key_env, credentials_env)")
        if redact_url(value) != value:
            return (f"{key}: the URL holds a password, which would be recorded in .hydra/; "
                    "remove it from the URL and use a store whose password comes from an "
                    "environment variable (postgresql: password_env)")
        found = _SECRET_IN_VALUE.search(value)
        if found and not found.group(1).lower().endswith("_env"):
            return (f"{key}: '{found.group(1)}' would be recorded in .hydra/; put the secret "
                    "in an environment variable and give the variable's NAME instead")
    return None
