"""Schema versions, applied in order at start. Never edit a released migration: add one.

The version reached is kept in SQLite's ``user_version``.
"""

from __future__ import annotations

MIGRATIONS: list[tuple[str, str]] = [
    (
        "operators and API tokens",
        """
        CREATE TABLE operators (
            id INTEGER PRIMARY KEY,
            username TEXT NOT NULL UNIQUE,
            password_hash TEXT NOT NULL,
            created_at REAL NOT NULL
        );
        CREATE TABLE api_tokens (
            id INTEGER PRIMARY KEY,
            operator_id INTEGER NOT NULL REFERENCES operators(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            prefix TEXT NOT NULL,
            token_hash TEXT NOT NULL UNIQUE,
            created_at REAL NOT NULL,
            last_used_at REAL
        );
        """,
    ),
]
