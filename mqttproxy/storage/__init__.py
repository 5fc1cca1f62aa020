"""The database seam: SQLite today (WAL, versioned migrations); the only place importing a driver."""

from mqttproxy.storage.database import Database, Row

__all__ = ["Database", "Row"]
