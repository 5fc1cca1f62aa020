"""Operator accounts, web sessions, API tokens and the login throttle, on a real SQLite file."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mqttproxy.operators import LoginThrottle, Operator, Operators
from mqttproxy.storage import Database


class FakeClock:
    """Stands in for the ``time`` module inside the operators service."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0 + self.now


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(tmp_path / "operators.db")
    await database.open()
    yield database
    await database.close()


@pytest.fixture
def operators(db: Database) -> Operators:
    return Operators(db, session_ttl=3600.0)


async def wait_past(deadline: float) -> None:
    """Wait until the monotonic clock has passed ``deadline``."""
    await asyncio.sleep(max(0.0, deadline - time.monotonic()) + 0.01)
    assert time.monotonic() > deadline


# --- accounts ------------------------------------------------------------------------


async def test_ensure_admin_generates_a_password(operators: Operators) -> None:
    generated = await operators.ensure_admin(None)
    assert isinstance(generated, str)
    assert len(generated) >= 12
    found = await operators.verify("admin", generated)
    assert found is not None
    assert found.username == "admin"


async def test_ensure_admin_uses_the_given_password(operators: Operators) -> None:
    assert await operators.ensure_admin("chosen password") is None
    assert await operators.verify("admin", "chosen password") is not None


async def test_ensure_admin_is_idempotent(operators: Operators, db: Database) -> None:
    assert await operators.ensure_admin("first") is None
    assert await operators.ensure_admin("second") is None
    assert await operators.ensure_admin(None) is None
    assert await db.fetch_all("SELECT username FROM operators") == [{"username": "admin"}]
    assert await operators.verify("admin", "first") is not None
    assert await operators.verify("admin", "second") is None


async def test_ensure_admin_with_an_empty_password_shows_the_one_it_makes(operators: Operators) -> None:
    """An empty password cannot be logged in with, so one is made: it has to be returned (logged)."""
    generated = await operators.ensure_admin("")
    assert generated, "admin was created with a random password nobody is told"
    assert await operators.verify("admin", generated) is not None


@pytest.mark.parametrize(
    ("username", "password", "accepted"),
    [("admin", "right", True), ("admin", "wrong", False), ("admin", "", False), ("nobody", "right", False)],
    ids=["right", "wrong", "empty", "unknown-user"],
)
async def test_verify(operators: Operators, username: str, password: str, accepted: bool) -> None:
    await operators.ensure_admin("right")
    found = await operators.verify(username, password)
    assert (found is not None) is accepted
    if found is not None:
        assert found.username == "admin"


async def test_change_password_logs_out_the_operators_sessions(operators: Operators) -> None:
    await operators.ensure_admin("old")
    admin = await operators.verify("admin", "old")
    assert admin is not None
    bob = await operators.create("bob", "bob's")
    laptop, phone, bobs = (
        operators.open_session(admin),
        operators.open_session(admin),
        operators.open_session(bob),
    )

    await operators.change_password(admin, "new")

    assert operators.session(laptop.id) is None
    assert operators.session(phone.id) is None
    assert operators.session(bobs.id) is not None
    assert await operators.verify("admin", "old") is None
    assert await operators.verify("admin", "new") == admin


# --- web sessions --------------------------------------------------------------------


async def test_sessions_expire_after_the_ttl(db: Database) -> None:
    operators = Operators(db, session_ttl=0.05)
    session = operators.open_session(Operator(1, "admin"))
    assert operators.session(session.id) is session
    await wait_past(session.expires_at)
    assert operators.session(session.id) is None


async def test_sessions_slide_while_used(db: Database, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr(sys.modules[Operators.__module__], "time", clock)
    operators = Operators(db, session_ttl=100.0)
    session = operators.open_session(Operator(1, "admin"))
    for _ in range(5):
        clock.now += 60.0
        assert operators.session(session.id) is session
    clock.now += 100.5
    assert operators.session(session.id) is None


async def test_sessions_are_distinct_and_can_be_closed(operators: Operators) -> None:
    admin = Operator(1, "admin")
    first, second = operators.open_session(admin), operators.open_session(admin)
    assert first.id != second.id
    assert first.csrf_token != second.csrf_token
    assert first.csrf_token != first.id
    operators.close_session(first.id)
    assert operators.session(first.id) is None
    assert operators.session(second.id) is second
    assert operators.session("") is None
    assert operators.session("made-up") is None


# --- API tokens ----------------------------------------------------------------------


async def test_tokens_create_verify_revoke(operators: Operators) -> None:
    admin = await operators.create("admin", "pw")
    bob = await operators.create("bob", "pw")
    token, secret = await operators.create_token(admin, "ci")
    assert secret.startswith("mqp_")
    assert len(secret) >= 40
    assert token.prefix == secret[:10]
    assert token.last_used_at is None

    assert await operators.verify_token(secret) == admin
    listed = await operators.tokens(admin)
    assert [item.id for item in listed] == [token.id]
    assert listed[0].last_used_at is not None
    assert await operators.tokens(bob) == []

    assert await operators.verify_token(secret + "x") is None
    assert await operators.revoke_token(bob, token.id) is False  # not bob's
    assert await operators.verify_token(secret) == admin
    assert await operators.revoke_token(admin, token.id) is True
    assert await operators.verify_token(secret) is None
    assert await operators.revoke_token(admin, token.id) is False
    assert await operators.tokens(admin) == []


async def test_tokens_without_the_prefix_are_not_looked_up(operators: Operators, db: Database) -> None:
    admin = await operators.create("admin", "pw")
    # A row whose hash matches a secret without the mqp_ prefix: still no match.
    unprefixed = "plain-secret-without-prefix"
    await db.execute(
        "INSERT INTO api_tokens (operator_id, name, prefix, token_hash, created_at) VALUES (?, ?, ?, ?, ?)",
        (admin.id, "odd", unprefixed[:10], hashlib.sha256(unprefixed.encode()).hexdigest(), 1.0),
    )
    assert await operators.verify_token(unprefixed) is None
    assert await operators.verify_token("") is None


async def test_tokens_are_stored_only_as_a_hash(operators: Operators, db: Database) -> None:
    admin = await operators.create("admin", "pw")
    _, secret = await operators.create_token(admin, "ci")
    await operators.verify_token(secret)
    files = [path for path in db.path.parent.iterdir() if path.name.startswith(db.path.name)]
    assert files
    for path in files:  # the database and its WAL
        assert secret.encode() not in path.read_bytes(), path
        assert secret[10:].encode() not in path.read_bytes(), path
    connection = sqlite3.connect(db.path)
    try:
        rows = connection.execute("SELECT * FROM api_tokens").fetchall()
    finally:
        connection.close()
    assert len(rows) == 1
    assert hashlib.sha256(secret.encode()).hexdigest() in rows[0]
    assert not any(isinstance(value, str) and secret[10:] in value for value in rows[0])


# --- the login throttle --------------------------------------------------------------


def test_throttle_allows_limit_failures_then_refuses() -> None:
    throttle = LoginThrottle(limit=5, window=60.0)
    for _ in range(4):
        throttle.failed("address:a", "user:u")
        assert throttle.retry_after("address:a", "user:u") == 0
    throttle.failed("address:a", "user:u")
    wait = throttle.retry_after("address:a")
    assert 59.0 < wait <= 60.0
    assert throttle.retry_after("address:b") == 0
    assert throttle.retry_after("address:b", "user:u") == pytest.approx(wait, abs=1.0)


async def test_throttle_forgets_failures_after_the_window() -> None:
    throttle = LoginThrottle(limit=2, window=0.1)
    throttle.failed("k")
    throttle.failed("k")
    started = time.monotonic()
    assert throttle.retry_after("k") > 0
    while throttle.retry_after("k") > 0:
        assert time.monotonic() - started < 5.0, "never released"
        await asyncio.sleep(0.01)
    assert time.monotonic() - started >= 0.09
    throttle.failed("k")
    assert throttle.retry_after("k") == 0  # the old failures no longer count


def test_throttle_resets_on_success() -> None:
    throttle = LoginThrottle(limit=5, window=60.0)
    for _ in range(4):
        throttle.failed("address:a", "user:u")
    throttle.succeeded("address:a", "user:u")
    for _ in range(4):
        throttle.failed("address:a", "user:u")
    assert throttle.retry_after("address:a", "user:u") == 0
    throttle.failed("address:a", "user:u")
    assert throttle.retry_after("address:a", "user:u") > 0


def test_a_flood_of_keys_keeps_recent_failures() -> None:
    throttle = LoginThrottle(limit=3, window=60.0)
    for _ in range(3):
        throttle.failed("address:victim")
    for number in range(10_001):
        throttle.failed(f"address:{number}")
    assert throttle.retry_after("address:victim") > 0


def test_a_flood_beyond_the_key_limit_forgets_the_least_recent_keys() -> None:
    throttle = LoginThrottle(limit=2, window=60.0, max_keys=100)
    for _ in range(2):
        throttle.failed("address:old")
    for number in range(200):
        throttle.failed("address:attacker", f"device:{number}")
    assert throttle.retry_after("address:attacker") > 0  # failing again keeps it remembered
    assert throttle.retry_after("address:old") == 0
    assert len(throttle._failures) == 100
