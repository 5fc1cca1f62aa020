"""Device authentication at CONNECT.

An ``Authenticator`` looks at the credentials of a CONNECT and either decides
(accept or refuse with a CONNACK return code) or passes (``None``: not one of
its users). ``DeviceAuth`` asks each authenticator in turn; when none decides,
anonymous policy applies. Static users from the config file are the first
authenticator; the device registry plugs in beside them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from mqttproxy.config import StaticUser
from mqttproxy.passwords import hash_password, verify_password
from mqttproxy.protocol.packets import ConnectReturnCode

__all__ = ["AuthDecision", "Authenticator", "ConnectRequest", "DeviceAuth", "StaticUsers", "hash_password"]


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectRequest:
    """What an authenticator may look at."""

    client_id: str
    username: str | None
    password: bytes | None
    peer: str  # "host:port" of the client
    tls: bool
    certificate: bytes | None = None  # DER of the client certificate the TLS listener verified


class TopicPolicy(Protocol):
    """Which topics an authenticated client may use (the registry's ACLs)."""

    def may_publish(self, topic: str) -> bool: ...

    def may_subscribe(self, topic_filter: str) -> bool: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class AuthDecision:
    return_code: ConnectReturnCode
    principal: str | None = None  # who was authenticated, for logs and ACLs
    policy: TopicPolicy | None = None  # None: every topic

    @property
    def accepted(self) -> bool:
        return self.return_code == ConnectReturnCode.ACCEPTED


class Authenticator(Protocol):
    async def authenticate(self, request: ConnectRequest) -> AuthDecision | None:
        """Decide for ``request``, or ``None`` if these credentials are not ours."""
        ...


class StaticUsers:
    """Users listed in the config file, with Argon2 password hashes."""

    def __init__(self, users: Sequence[StaticUser]) -> None:
        self._hashes = {user.username: user.password_hash for user in users}
        # Checked for unknown user names too, so timing does not reveal which exist.
        self._dummy_hash = hash_password("not a real password")

    def __len__(self) -> int:
        return len(self._hashes)

    async def authenticate(self, request: ConnectRequest) -> AuthDecision | None:
        if request.username is None:
            return None
        stored = self._hashes.get(request.username)
        password = request.password or b""
        # Argon2 is deliberately slow: keep it off the event loop.
        matches = await asyncio.to_thread(verify_password, stored or self._dummy_hash, password)
        if stored is None:
            return None
        if not matches:
            return AuthDecision(return_code=ConnectReturnCode.BAD_USERNAME_OR_PASSWORD)
        return AuthDecision(return_code=ConnectReturnCode.ACCEPTED, principal=f"user:{request.username}")


class DeviceAuth:
    """Asks each authenticator in turn; the first that decides wins."""

    def __init__(self, authenticators: Sequence[Authenticator], *, allow_anonymous: bool) -> None:
        self._authenticators = list(authenticators)
        self.allow_anonymous = allow_anonymous

    def add(self, authenticator: Authenticator) -> None:
        self._authenticators.append(authenticator)

    async def authenticate(self, request: ConnectRequest) -> AuthDecision:
        for authenticator in self._authenticators:
            decision = await authenticator.authenticate(request)
            if decision is not None:
                return decision
        if request.username is None and request.password is None:
            if self.allow_anonymous:
                return AuthDecision(return_code=ConnectReturnCode.ACCEPTED, principal="anonymous")
            return AuthDecision(return_code=ConnectReturnCode.NOT_AUTHORIZED)
        if self.allow_anonymous and not self._authenticators:
            # Nothing to check credentials against: treat as anonymous.
            return AuthDecision(return_code=ConnectReturnCode.ACCEPTED, principal="anonymous")
        return AuthDecision(return_code=ConnectReturnCode.BAD_USERNAME_OR_PASSWORD)
