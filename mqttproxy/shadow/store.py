"""Shadows in SQLite: one row per (thing, shadow name); a deleted shadow keeps its row and version."""

from __future__ import annotations

import json
import time

from mqttproxy.shadow.document import Shadow
from mqttproxy.storage import Database


class ShadowStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    async def load(self, thing: str, name: str) -> Shadow:
        row = await self._db.fetch_one(
            "SELECT state, metadata, version FROM shadows WHERE thing = ? AND name = ?", (thing, name)
        )
        if row is None:
            return Shadow()
        state = json.loads(row["state"]) if row["state"] is not None else None
        return Shadow(state=state, metadata=json.loads(row["metadata"] or "{}"), version=row["version"])

    async def save(self, thing: str, name: str, shadow: Shadow) -> None:
        await self._db.execute(
            "INSERT INTO shadows (thing, name, state, metadata, version, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (thing, name) DO UPDATE SET state = excluded.state, metadata = excluded.metadata, "
            "version = excluded.version, updated_at = excluded.updated_at",
            (
                thing,
                name,
                json.dumps(shadow.state, separators=(",", ":")),
                json.dumps(shadow.metadata, separators=(",", ":")),
                shadow.version,
                time.time(),
            ),
        )

    async def delete(self, thing: str, name: str, version: int) -> None:
        # The row stays: a shadow created again later continues from this version.
        await self._db.execute(
            "UPDATE shadows SET state = NULL, metadata = NULL, version = ?, updated_at = ? "
            "WHERE thing = ? AND name = ?",
            (version, time.time(), thing, name),
        )

    async def things(self) -> list[str]:
        rows = await self._db.fetch_all(
            "SELECT DISTINCT thing FROM shadows WHERE state IS NOT NULL ORDER BY thing"
        )
        return [row["thing"] for row in rows]

    async def names(self, thing: str, *, page_size: int, after: str | None) -> list[str]:
        rows = await self._db.fetch_all(
            "SELECT name FROM shadows WHERE thing = ? AND name != '' AND state IS NOT NULL AND name > ? "
            "ORDER BY name LIMIT ?",
            (thing, after or "", page_size),
        )
        return [row["name"] for row in rows]
