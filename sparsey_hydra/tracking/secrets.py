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
