"""Data configs of the timeseries recorder: what the REST API takes and ``data/*.json`` holds.

A data config names a topic filter and says which numbers to pull out of the messages it
matches. Validated with pydantic; unknown fields are errors. The per-message work happens in
:mod:`mqttproxy.timeseries.extract`, which compiles a validated config once and never touches
pydantic again.

Topic filters are MQTT filters (``+``, a final ``#``) in which a whole level written ``{name}``
matches like ``+`` and records that level's text as the label ``name``::

    devices/{device}/sensors/{sensor}   ->  subscribes devices/+/sensors/+
"""

from __future__ import annotations

import re
from typing import Literal

import pydantic
from pydantic import BaseModel, ConfigDict, ValidationInfo, field_validator

SEPARATOR = "/"
SINGLE_LEVEL = "+"
MULTI_LEVEL = "#"
MAX_TOPIC_BYTES = 65_535
MAX_FIELDS = 32
MAX_LABELS = 16
MAX_LABEL_VALUE = 256
MAX_POINTER = 1024

_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")
_METRIC = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,127}")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]{0,63}")

ID_RULE = "1 to 64 characters: lowercase letters, digits, '_' and '-', starting with a letter or digit"
METRIC_RULE = "1 to 128 characters: letters, digits, '_' and ':', not starting with a digit"
LABEL_RULE = "1 to 64 characters: letters, digits and '_', not starting with a digit or '__'"


def check_label_name(name: str) -> None:
    """``ValueError`` unless ``name`` may name a label (Prometheus rules; ``__`` names are reserved)."""
    if _LABEL.fullmatch(name) is None or name.startswith("__"):
        raise ValueError(f"bad label name {name!r}: {LABEL_RULE}")


def check_pointer(pointer: str) -> str:
    """``ValueError`` unless ``pointer`` is a JSON Pointer (RFC 6901)."""
    if pointer and not pointer.startswith("/"):
        raise ValueError(f"a JSON Pointer is '' (the whole document) or starts with '/', not {pointer!r}")
    if len(pointer) > MAX_POINTER:
        raise ValueError(f"a JSON Pointer is at most {MAX_POINTER} characters long")
    if "~" in pointer and any(part[:1] not in ("0", "1") for part in pointer.split("~")[1:]):
        raise ValueError(f"in a JSON Pointer '~' is written '~0' and '/' inside a key '~1': {pointer!r}")
    return pointer


def parse_topic(topic: str) -> tuple[tuple[int, str], ...]:
    """Check a data config's topic filter; return its captures as (level index, label name).

    ``ValueError`` names the first problem, counting levels from 1.
    """
    if not topic:
        raise ValueError("a topic filter is at least one character long")
    if "\x00" in topic:
        raise ValueError("a topic filter must not contain U+0000")
    try:
        size = len(topic.encode("utf-8"))
    except UnicodeEncodeError:
        raise ValueError("a topic filter must be valid Unicode (it has a lone surrogate)") from None
    if size > MAX_TOPIC_BYTES:
        raise ValueError(f"a topic filter is at most {MAX_TOPIC_BYTES} bytes in UTF-8, this one is {size}")
    levels = topic.split(SEPARATOR)
    captures: dict[str, int] = {}
    for index, level in enumerate(levels):
        where = f"level {index + 1} {level!r}"
        if level in (SINGLE_LEVEL, MULTI_LEVEL):
            if level == MULTI_LEVEL and index != len(levels) - 1:
                raise ValueError(f"{where}: '#' must be the last level of a topic filter")
            continue
        if SINGLE_LEVEL in level or MULTI_LEVEL in level:
            raise ValueError(f"{where}: a wildcard ('+' or '#') must be a whole topic level")
        if "{" not in level and "}" not in level:
            continue
        name = level[1:-1]
        if not (level.startswith("{") and level.endswith("}")) or "{" in name or "}" in name:
            raise ValueError(f"{where}: braces must enclose a whole topic level, as in 'devices/{{device}}'")
        if not name:
            raise ValueError(f"{where}: a capture needs a label name, as in '{{device}}'")
        try:
            check_label_name(name)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if name in captures:
            raise ValueError(f"{where}: label {name!r} is already captured at level {captures[name] + 1}")
        captures[name] = index
    return tuple((index, name) for name, index in captures.items())


class PayloadTimestamp(BaseModel):
    """Where a message carries its own time: a number at ``pointer``, in ``unit`` since the Unix epoch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    pointer: str = pydantic.Field(description="JSON Pointer to the number, e.g. '/ts'")
    unit: Literal["s", "ms", "us", "ns"] = "ms"

    @field_validator("pointer")
    @classmethod
    def _valid_pointer(cls, value: str) -> str:
        if not value:
            raise ValueError("a timestamp pointer must point into the payload, not be '' (the whole payload)")
        return check_pointer(value)


class Field(BaseModel):
    """One number taken from each matching message: a metric."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str = pydantic.Field(description="metric name (Prometheus rules)")
    pointer: str | None = pydantic.Field(
        default=None, description="JSON Pointer to the value; null: the whole payload is the number"
    )
    type: Literal["gauge", "counter"] = "gauge"
    unit: str = pydantic.Field(
        default="", max_length=32, description="unit of the value; a value stating another unit is refused"
    )
    retention_days: float = pydantic.Field(default=30.0, gt=0, le=36_500, allow_inf_nan=False)

    @field_validator("metric")
    @classmethod
    def _valid_metric(cls, value: str) -> str:
        if _METRIC.fullmatch(value) is None:
            raise ValueError(f"bad metric name {value!r}: {METRIC_RULE}")
        return value

    @field_validator("pointer")
    @classmethod
    def _valid_pointer(cls, value: str | None) -> str | None:
        return None if value is None else check_pointer(value)

    @field_validator("unit")
    @classmethod
    def _valid_unit(cls, value: str) -> str:
        if value != "".join(value.split()):
            raise ValueError(f"a unit has no spaces (it is compared with the text after a number): {value!r}")
        return value


class DataConfig(BaseModel):
    """A topic filter and the metrics recorded from the messages it matches."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    topic: str = pydantic.Field(description="MQTT topic filter; a level '{name}' matches like '+' as label")
    fields: list[Field] = pydantic.Field(min_length=1, max_length=MAX_FIELDS)
    labels: dict[str, str] = pydantic.Field(
        default_factory=dict, max_length=MAX_LABELS, description="constant labels of every point"
    )
    timestamp: PayloadTimestamp | None = pydantic.Field(
        default=None, description="the time in the payload; null: the time the gateway received it"
    )
    enabled: bool = True

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if _ID.fullmatch(value) is None:
            raise ValueError(f"bad id {value!r}: {ID_RULE}")
        return value

    @field_validator("topic")
    @classmethod
    def _valid_topic(cls, value: str) -> str:
        parse_topic(value)
        return value

    @field_validator("fields")
    @classmethod
    def _unique_metrics(cls, values: list[Field]) -> list[Field]:
        seen: dict[str, int] = {}
        for index, field in enumerate(values):
            if field.metric in seen:
                raise ValueError(f"metric {field.metric!r} is in fields {seen[field.metric]} and {index}")
            seen[field.metric] = index
        return values

    @field_validator("labels")
    @classmethod
    def _valid_labels(cls, values: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        topic = info.data.get("topic")
        captured = {name for _, name in parse_topic(topic)} if topic is not None else set()
        for name, value in values.items():
            check_label_name(name)
            if name in captured:
                raise ValueError(f"label {name!r} is already captured from the topic")
            if len(value) > MAX_LABEL_VALUE:
                raise ValueError(f"label {name!r}: a value is at most {MAX_LABEL_VALUE} characters long")
        return values

    @property
    def captures(self) -> tuple[tuple[int, str], ...]:
        """The topic's captures: (level index from 0, label name), in level order."""
        return parse_topic(self.topic)

    @property
    def filter(self) -> str:
        """The MQTT topic filter to subscribe: ``topic`` with every ``{name}`` level written ``+``."""
        return SEPARATOR.join(
            SINGLE_LEVEL if level.startswith("{") else level for level in self.topic.split(SEPARATOR)
        )
