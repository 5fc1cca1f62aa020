"""Operator accounts (stored, Argon2-hashed), web sessions (in memory), API tokens (stored hashed).

The first start with no operator creates ``admin`` with a password from the
config or environment, or a random one written once to the log.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass

from mqttproxy.passwords import hash_password, verify_password
from mqttproxy.storage import Database
from mqttproxy.throttle import LoginThrottle

__all__ = ["ApiToken", "LoginThrottle", "Operator", "Operators", "WebSession"]

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "mqp_"  # noqa: S105 - marks API tokens (in logs, secret scanners), not a secret


@dataclass(frozen=True, slots=True)
class Operator:
    id: int
    username: str


@dataclass(slots=True)
class WebSession:
    """A logged-in browser: its operator, its CSRF token and when it expires."""

    id: str
    operator: Operator
    csrf_token: str
    expires_at: float


@dataclass(frozen=True, slots=True)
class ApiToken:
    id: int
    name: str
    prefix: str  # the first characters, to tell tokens apart without revealing them
    created_at: float
    last_used_at: float | None


def _token_hash(token: str) -> str:
    # API tokens are 256 random bits: a fast hash is enough, and keeps
    # every authenticated request cheap (unlike passwords).
    return hashlib.sha256(token.encode()).hexdigest()


class Operators:
    def __init__(self, database: Database, *, session_ttl: float) -> None:
        self._db = database
        self._session_ttl = session_ttl
        self._sessions: dict[str, WebSession] = {}
        self._dummy_hash: str | None = None

    async def ensure_admin(self, password: str | None) -> str | None:
        """Create ``admin`` if there is no operator yet; return the password if it was generated."""
        if await self._db.fetch_one("SELECT id FROM operators LIMIT 1"):
            return None
        generated = not password  # an empty password could never be typed in
        password = password or secrets.token_urlsafe(12)
        await self.create("admin", password)
        return password if generated else None

    async def create(self, username: str, password: str) -> Operator:
        password_hash = await asyncio.to_thread(hash_password, password)
        operator_id = await self._db.execute(
            "INSERT INTO operators (username, password_hash, created_at) VALUES (?, ?, ?)",
            (username, password_hash, time.time()),
        )
        return Operator(operator_id, username)

    async def verify(self, username: str, password: str) -> Operator | None:
        """The operator if the password is right; Argon2 runs off the event loop."""
        row = await self._db.fetch_one(
            "SELECT id, password_hash FROM operators WHERE username = ?", (username,)
        )
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(hash_password, secrets.token_hex(8))
        # Unknown user names cost as much as known ones, so timing reveals nothing.
        stored = row["password_hash"] if row else self._dummy_hash
        matches = await asyncio.to_thread(verify_password, stored, password)
        return Operator(row["id"], username) if row and matches else None

    async def change_password(self, operator: Operator, password: str) -> None:
        password_hash = await asyncio.to_thread(hash_password, password)
        await self._db.execute(
            "UPDATE operators SET password_hash = ? WHERE id = ?", (password_hash, operator.id)
        )
        # Every other browser of this operator has to log in again.
        for session_id in [key for key, value in self._sessions.items() if value.operator.id == operator.id]:
            del self._sessions[session_id]

    # --- web sessions ---------------------------------------------------------------

    def open_session(self, operator: Operator) -> WebSession:
        self._expire_sessions()
        session = WebSession(
            id=secrets.token_urlsafe(32),
            operator=operator,
            csrf_token=secrets.token_urlsafe(32),
            expires_at=time.monotonic() + self._session_ttl,
        )
        self._sessions[session.id] = session
        return session

    def session(self, session_id: str) -> WebSession | None:
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = time.monotonic()
        if session.expires_at < now:
            del self._sessions[session_id]
            return None
        session.expires_at = now + self._session_ttl  # sliding expiry
        return session

    def close_session(self, session_id: str) -> None:
        self._sessions.pop(session_id, None)

    def _expire_sessions(self) -> None:
        now = time.monotonic()
        for session_id in [key for key, value in self._sessions.items() if value.expires_at < now]:
            del self._sessions[session_id]

    # --- API tokens ---------------------------------------------------------------------

    async def create_token(self, operator: Operator, name: str) -> tuple[ApiToken, str]:
        """A new token; its secret is returned once and stored only as a hash."""
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        now = time.time()
        token_id = await self._db.execute(
            "INSERT INTO api_tokens (operator_id, name, prefix, token_hash, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (operator.id, name, secret[:10], _token_hash(secret), now),
        )
        return ApiToken(token_id, name, secret[:10], now, None), secret

    async def tokens(self, operator: Operator) -> list[ApiToken]:
        rows = await self._db.fetch_all(
            "SELECT id, name, prefix, created_at, last_used_at FROM api_tokens "
            "WHERE operator_id = ? ORDER BY id",
            (operator.id,),
        )
        return [ApiToken(**row) for row in rows]

    async def revoke_token(self, operator: Operator, token_id: int) -> bool:
        count = await self._db.execute(
            "DELETE FROM api_tokens WHERE id = ? AND operator_id = ?", (token_id, operator.id)
        )
        return count > 0

    async def verify_token(self, secret: str) -> Operator | None:
        if not secret.startswith(TOKEN_PREFIX):
            return None
        row = await self._db.fetch_one(
            "SELECT t.id, o.id AS operator_id, o.username FROM api_tokens t "
            "JOIN operators o ON o.id = t.operator_id WHERE t.token_hash = ?",
            (_token_hash(secret),),
        )
        if row is None:
            return None
        await self._db.execute(
            "UPDATE api_tokens SET last_used_at = ? WHERE id = ?", (time.time(), row["id"])
        )
        return Operator(row["operator_id"], row["username"])
