"""Device tokens: ``xxxx-yyyy-zzzz`` from a CSPRNG, stored only as a keyed hash.

Four characters a group from a 56-letter alphabet without look-alikes (no
0/O/o, 1/l/I) give about 70 bits. The stored hash is an HMAC under a key kept
outside the database (``data/registry.key``), so a stolen database alone
does not let anyone try tokens offline; and it is fast, so a thousand
devices reconnecting at once are checked in milliseconds, not seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

ALPHABET = "23456789abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ"
GROUPS, GROUP_LENGTH = 3, 4


def new_token() -> str:
    return "-".join("".join(secrets.choice(ALPHABET) for _ in range(GROUP_LENGTH)) for _ in range(GROUPS))


def load_key(path: Path) -> bytes:
    """The installation's token key, created (mode 0600) on first use."""
    try:
        key = path.read_bytes()
    except FileNotFoundError:
        key = secrets.token_bytes(32)
        path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(key)
    if len(key) < 32:
        raise ValueError(f"{path}: the token key is too short ({len(key)} bytes)")
    return key


def token_hash(key: bytes, token: str) -> str:
    return hmac.new(key, token.encode(), hashlib.sha256).hexdigest()
