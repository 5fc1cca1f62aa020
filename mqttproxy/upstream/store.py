"""``data/brokers.json``: the upstream broker set, human-readable and written atomically.

A file that does not parse stops start-up with an error naming the file,
line and field, and is never overwritten. Passwords are encrypted (Fernet)
when a secret key is configured; without one they are stored in clear text
and a warning says so.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr, ValidationError

from mqttproxy.errors import ConfigError
from mqttproxy.upstream.jsonpos import line_of
from mqttproxy.upstream.models import BrokerRecord

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1


class BrokerStore:
    """Loads and saves the broker records of one file."""

    def __init__(self, path: Path, *, secret_key: str | None) -> None:
        self.path = path
        self._fernet = _fernet(secret_key) if secret_key else None

    def load(self) -> list[BrokerRecord]:
        """The stored records; none when the file does not exist yet."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{self.path}: cannot read: {exc}", path=str(self.path)) from exc
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{self.path}:{exc.lineno}: not valid JSON: {exc.msg} (column {exc.colno})",
                path=str(self.path),
                line=exc.lineno,
            ) from exc
        if not isinstance(document, dict) or not isinstance(document.get("brokers"), list):
            raise ConfigError(
                f'{self.path}:1: expected {{"version": 1, "brokers": [...]}}', path=str(self.path), line=1
            )
        if document.get("version", FORMAT_VERSION) != FORMAT_VERSION:
            line = line_of(text, ["version"])
            raise ConfigError(
                f"{self.path}:{line}: version: {document['version']!r} is not a format this gateway reads "
                f"(it writes version {FORMAT_VERSION})",
                path=str(self.path),
                key="version",
                line=line,
            )
        records = []
        seen: set[str] = set()
        for index, raw in enumerate(document["brokers"]):
            record = self._record(text, index, raw)
            if record.id in seen:
                line = line_of(text, ["brokers", index, "id"])
                raise ConfigError(
                    f"{self.path}:{line}: brokers[{index}].id: {record.id!r} is used twice",
                    path=str(self.path),
                    key=f"brokers.{index}.id",
                    line=line,
                )
            seen.add(record.id)
            records.append(record)
        self._warn_if_clear_text(records)
        return records

    def _warn_if_clear_text(self, records: Sequence[BrokerRecord]) -> None:
        if self._fernet is None and any(record.password is not None for record in records):
            logger.warning(
                "%s stores upstream passwords in clear text: set [upstream] secret_key "
                "(or MQTTPROXY_SECRET_KEY) to encrypt them",
                self.path,
            )

    def _record(self, text: str, index: int, raw: Any) -> BrokerRecord:
        if isinstance(raw, dict) and isinstance(raw.get("password"), dict):
            raw = {**raw, "password": self._decrypt(text, index, raw["password"])}
        try:
            return BrokerRecord.model_validate(raw)
        except ValidationError as exc:
            error = exc.errors()[0]
            location = ["brokers", index, *error["loc"]]
            line = line_of(text, location)
            field = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"])
            message = "unknown field" if error["type"] == "extra_forbidden" else error["msg"]
            raise ConfigError(
                f"{self.path}:{line}: brokers[{index}]{field}: {message}",
                path=str(self.path),
                key=".".join(str(part) for part in location),
                line=line,
            ) from exc

    def _decrypt(self, text: str, index: int, sealed: dict[str, Any]) -> str:
        line = line_of(text, ["brokers", index, "password"])
        where = f"{self.path}:{line}: brokers[{index}].password"
        if self._fernet is None:
            raise ConfigError(
                f"{where}: is encrypted, but no secret key is configured ([upstream] secret_key "
                "or MQTTPROXY_SECRET_KEY)",
                path=str(self.path),
                line=line,
            )
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(str(sealed.get("encrypted", "")).encode()).decode()
        except InvalidToken as exc:
            raise ConfigError(
                f"{where}: cannot be decrypted with the configured secret key", path=str(self.path), line=line
            ) from exc

    def save(self, records: Sequence[BrokerRecord]) -> None:
        """Write every record atomically: temporary file, fsync, rename, fsync the directory."""
        self._warn_if_clear_text(records)
        document = {"version": FORMAT_VERSION, "brokers": [self._serialise(record) for record in records]}
        data = (json.dumps(document, indent=2, ensure_ascii=False) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor, temporary = tempfile.mkstemp(prefix=".brokers-", suffix=".json", dir=self.path.parent)
        try:
            with os.fdopen(descriptor, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.chmod(temporary, 0o600)  # it may hold passwords
            os.replace(temporary, self.path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def _serialise(self, record: BrokerRecord) -> dict[str, Any]:
        data = record.model_dump(mode="json", exclude={"password"})
        data = {"id": data.pop("id"), **data}
        if record.password is not None:
            data["password"] = self._seal(record.password)
        return data

    def _seal(self, password: SecretStr) -> str | dict[str, str]:
        secret = password.get_secret_value()
        if self._fernet is None:
            return secret
        return {"encrypted": self._fernet.encrypt(secret.encode()).decode()}


def _fernet(secret_key: str) -> Fernet:
    from cryptography.fernet import Fernet

    # Any passphrase works: it is stretched to the 32-byte key Fernet wants.
    digest = hashlib.sha256(secret_key.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(digest))
