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
    (
        "device registry: tenants, devices, device tokens",
        """
        CREATE TABLE tenants (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            auth_mode TEXT NOT NULL CHECK (auth_mode IN ('token', 'certificate')),
            ca_cert TEXT,
            acl TEXT NOT NULL DEFAULT '[]',
            default_acl INTEGER NOT NULL DEFAULT 1,
            created_at REAL NOT NULL
        );
        CREATE TABLE devices (
            id TEXT PRIMARY KEY,
            tenant_id TEXT NOT NULL REFERENCES tenants(id) ON DELETE RESTRICT,
            name TEXT NOT NULL DEFAULT '',
            labels TEXT NOT NULL DEFAULT '[]',
            notes TEXT NOT NULL DEFAULT '',
            metadata TEXT NOT NULL DEFAULT '{}',
            acl TEXT NOT NULL DEFAULT '[]',
            enabled INTEGER NOT NULL DEFAULT 1,
            created_at REAL NOT NULL,
            last_seen REAL,
            last_address TEXT
        );
        CREATE INDEX devices_by_tenant ON devices(tenant_id);
        CREATE TABLE device_tokens (
            device_id TEXT PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
            token_hash TEXT NOT NULL,
            created_at REAL NOT NULL,
            expires_at REAL
        );
        """,
    ),
    (
        "device shadows",
        """
        CREATE TABLE shadows (
            thing TEXT NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            state TEXT,
            metadata TEXT,
            version INTEGER NOT NULL,
            updated_at REAL NOT NULL,
            PRIMARY KEY (thing, name)
        );
        """,
    ),
    (
        "timeseries",
        """
        CREATE TABLE ts_configs (
            id TEXT PRIMARY KEY,
            body TEXT NOT NULL,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL
        );
        CREATE TABLE ts_series (
            id INTEGER PRIMARY KEY,
            metric TEXT NOT NULL,
            labels TEXT NOT NULL,
            UNIQUE (metric, labels)
        );
        -- Samples of one series, compressed together (mqttproxy/timeseries/codec.py),
        -- cut from its head once full, never spanning a UTC day.
        CREATE TABLE ts_chunks (
            series_id INTEGER NOT NULL REFERENCES ts_series (id) ON DELETE CASCADE,
            start_ms INTEGER NOT NULL,
            end_ms INTEGER NOT NULL,
            samples INTEGER NOT NULL,
            data BLOB NOT NULL
        );
        CREATE INDEX ts_chunks_by_series_time ON ts_chunks (series_id, end_ms);

        -- Samples not yet in a chunk: each flush of the recorder appends one row
        -- holding all its samples, whatever the number of series (timeseries/heads.py).
        -- AUTOINCREMENT: ids are never reused, ts_heads.since compares with them.
        CREATE TABLE ts_log (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            data BLOB NOT NULL
        );
        -- Per series: the first log row that can hold its samples not yet sealed.
        CREATE TABLE ts_heads (
            series_id INTEGER PRIMARY KEY REFERENCES ts_series (id) ON DELETE CASCADE,
            since INTEGER NOT NULL
        );
        """,
    ),
]
