"""Password hashing (Argon2id), shared by device users and operators.

argon2 is imported on first use, so a gateway that never checks a password
does not load it.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from argon2 import PasswordHasher


@functools.cache
def _hasher() -> PasswordHasher:
    from argon2 import PasswordHasher

    # OWASP's recommended Argon2id parameters (19 MiB, 2 passes, 1 lane): strong,
    # yet cheap enough that a reconnect storm of devices does not exhaust memory.
    return PasswordHasher(time_cost=2, memory_cost=19_456, parallelism=1)


def hash_password(password: str) -> str:
    """An Argon2id hash of ``password`` in the PHC string format."""
    return _hasher().hash(password)


def verify_password(password_hash: str, password: str | bytes) -> bool:
    """Whether ``password`` matches; ``False`` for a malformed hash too. Slow on purpose: not on the loop."""
    from argon2.exceptions import InvalidHashError, VerificationError

    try:
        return _hasher().verify(password_hash, password)
    except (VerificationError, InvalidHashError):  # a mismatch is a VerificationError
        return False
