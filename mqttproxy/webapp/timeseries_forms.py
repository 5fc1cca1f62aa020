"""The timeseries pages' forms as text: the data config form, constant labels, the series filter.

A data config's fields are rows of boxes named ``fields-N-metric``,
``fields-N-source`` (``pointer`` or ``payload``), ``fields-N-pointer``,
``fields-N-type``, ``fields-N-unit``, ``fields-N-retention_days`` and
``fields-N-remove``. ``N`` only tells the rows apart: they count in the
order the page shows them. A row left empty (no metric, pointer or unit) or
ticked "remove" is not a field. Constant labels are one ``name=value`` a
line. ``validate_config`` turns a posted form into a ``DataConfig`` or into
errors next to the boxes they concern, in pydantic's words; nothing here
does I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from mqttproxy.timeseries import DataConfig
from mqttproxy.timeseries.models import Field
from mqttproxy.webapp.pages import error_message, split_words
from mqttproxy.webapp.registry_forms import FieldError, Form

CONFIG_FIELDS = ("id", "topic", "labels", "timestamp_pointer", "timestamp_unit", "enabled")
ROW_FIELDS = ("metric", "source", "pointer", "type", "unit", "retention_days", "remove")
SOURCES = (("pointer", "JSON Pointer"), ("payload", "the whole payload"))
TYPES = (("gauge", "gauge"), ("counter", "counter"))
TIMESTAMP_UNITS = (("s", "seconds"), ("ms", "milliseconds"), ("us", "microseconds"), ("ns", "nanoseconds"))
_ROW = re.compile(r"^fields-(\d{1,3})-([a-z_]+)$")  # rows 0 to 999: the model allows far fewer fields
_DUPLICATE = re.compile(r"metric '(.*)' is in fields (\d+) and (\d+)")
_DEFAULT_RETENTION = Field.model_fields["retention_days"].default


def row_name(row: int | str, name: str) -> str:
    """The form name of box ``name`` in row ``row``."""
    return f"fields-{row}-{name}"


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def blank_row(row: int | str) -> dict[str, Any]:
    """An empty row's boxes (``row`` "__N__": the row the page's script copies)."""
    return {
        row_name(row, "metric"): "",
        row_name(row, "source"): "pointer",
        row_name(row, "pointer"): "",
        row_name(row, "type"): "gauge",
        row_name(row, "unit"): "",
        row_name(row, "retention_days"): _number(_DEFAULT_RETENTION),
        row_name(row, "remove"): False,
    }


# --- constant labels --------------------------------------------------------------------


def parse_labels(text: str) -> dict[str, str]:
    """``name=value``, one a line; blank lines skipped. Raises ``FieldError`` naming the line."""
    labels: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        name, equals, value = line.partition("=")
        name = name.strip()
        if not equals or not name:
            raise FieldError(f"Line {number}: write a label as name=value, e.g. site=hall-7.")
        if name in labels:
            raise FieldError(f"Line {number}: label {name!r} is given twice.")
        labels[name] = value.strip()
    return labels


def format_labels(labels: Mapping[str, str]) -> str:
    return "\n".join(f"{name}={value}" for name, value in labels.items())


def parse_label_filter(text: str) -> dict[str, str]:
    """The series filter's ``name=value`` words (double quotes group words). Raises ``FieldError``."""
    try:
        words = split_words(text)
    except ValueError:
        raise FieldError("A quote is not closed.") from None
    labels: dict[str, str] = {}
    for word in words:
        name, equals, value = word.partition("=")
        if not equals or not name:
            raise FieldError(f"{word!r}: filter by labels written name=value, e.g. device=d1.")
        labels[name] = value
    return labels


def format_label_filter(labels: Mapping[str, str]) -> str:
    return " ".join(
        f'"{name}={value}"'
        if any(char.isspace() for char in name + value) or not value
        else f"{name}={value}"
        for name, value in labels.items()
    )


# --- the data config form ----------------------------------------------------------------


def config_values(config: DataConfig | None = None) -> dict[str, Any]:
    """The form's boxes for ``config``, or for a new one; an empty row follows the fields."""
    if config is None:
        values: dict[str, Any] = {"id": "", "topic": "", "labels": "", "enabled": True}
        values |= {"timestamp_pointer": "", "timestamp_unit": "ms", "rows": [0]}
        return values | blank_row(0)
    values = {
        "id": config.id,
        "topic": config.topic,
        "labels": format_labels(config.labels),
        "timestamp_pointer": config.timestamp.pointer if config.timestamp else "",
        "timestamp_unit": config.timestamp.unit if config.timestamp else "ms",
        "enabled": config.enabled,
        "rows": list(range(len(config.fields) + 1)),
    }
    for row, item in enumerate(config.fields):
        values |= {
            row_name(row, "metric"): item.metric,
            row_name(row, "source"): "payload" if item.pointer is None else "pointer",
            row_name(row, "pointer"): item.pointer or "",
            row_name(row, "type"): item.type,
            row_name(row, "unit"): item.unit,
            row_name(row, "retention_days"): _number(item.retention_days),
            row_name(row, "remove"): False,
        }
    return values | blank_row(len(config.fields))


def values_from_post(form: Mapping[str, Any]) -> dict[str, Any]:
    """The boxes as posted: text as typed (new lines as ``\\n``), checkboxes as booleans, rows in order."""

    def text(name: str) -> str:
        value = form.get(name, "")
        return value.replace("\r\n", "\n") if isinstance(value, str) else ""

    values: dict[str, Any] = {name: text(name) for name in CONFIG_FIELDS if name != "enabled"}
    values["enabled"] = "enabled" in form
    values["rows"] = sorted({int(found.group(1)) for found in map(_ROW.match, form) if found})
    for row in values["rows"]:
        for name in ROW_FIELDS:
            key = row_name(row, name)
            values[key] = key in form if name == "remove" else text(key)
    return values


def _field_data(values: Mapping[str, Any], row: int) -> dict[str, Any] | None:
    """The ``Field`` dict of one row; ``None`` for a row that is empty or to be removed."""
    box = {name: values[row_name(row, name)] for name in ROW_FIELDS}
    if box["remove"] or not (box["metric"].strip() or box["pointer"].strip() or box["unit"].strip()):
        return None
    data: dict[str, Any] = {
        "metric": box["metric"].strip(),
        "pointer": None if box["source"] == "payload" else box["pointer"].strip(),
        "type": box["type"],
        "unit": box["unit"].strip(),
    }
    if box["retention_days"].strip():
        data["retention_days"] = box["retention_days"].strip()
    return data


def _place(error: ErrorDetails, rows: list[int], shown: list[int]) -> tuple[str, str]:
    """Which box an error goes next to, and its message; ``rows``: the form row of each model field."""
    loc = error["loc"]
    head = str(loc[0]) if loc else ""
    message = error_message(error)
    if head in ("id", "topic") and error.get("input") == "":
        return head, "Required."
    if head == "fields" and len(loc) >= 3 and isinstance(loc[1], int) and loc[1] < len(rows):
        name = str(loc[2]) if str(loc[2]) in ROW_FIELDS else "metric"
        if name == "metric" and error.get("input") == "":
            return row_name(rows[loc[1]], name), "Required."
        return row_name(rows[loc[1]], name), _sentence(message)
    if head == "fields":
        duplicate = _DUPLICATE.search(message)
        if duplicate:
            first, second = (rows[int(index)] for index in duplicate.group(2, 3))
            where = shown.index(first) + 1
            return row_name(second, "metric"), f"Metric {duplicate.group(1)!r} is already field {where}."
        if error["type"] == "too_short":
            return "fields", "Give at least one field: its metric name and where its value is."
        return "fields", _sentence(message)
    if head == "timestamp":
        name = str(loc[1]) if len(loc) > 1 else "pointer"
        return f"timestamp_{name if name in ('pointer', 'unit') else 'pointer'}", _sentence(message)
    return (head, _sentence(message)) if head in CONFIG_FIELDS else ("", _sentence(message))


def _sentence(message: str) -> str:
    return message[:1].upper() + message[1:]


def validate_config(
    values: Mapping[str, Any], *, config_id: str | None = None
) -> tuple[DataConfig | None, Form]:
    """The data config the form stands for, or ``None`` and the errors.

    ``config_id``: the id of the config being edited (the form's ``id`` box is then ignored).
    """
    form = Form(dict(values))
    data: dict[str, Any] = {
        "id": config_id if config_id is not None else values["id"].strip(),
        "topic": values["topic"].strip(),
        "enabled": bool(values["enabled"]),
    }
    try:
        data["labels"] = parse_labels(values["labels"])
    except FieldError as exc:
        form.add_error("labels", str(exc))
    rows: list[int] = []
    fields = []
    for row in values["rows"]:
        item = _field_data(values, row)
        if item is not None:
            if values[row_name(row, "source")] not in dict(SOURCES):
                form.add_error(row_name(row, "source"), "Choose a JSON Pointer or the whole payload.")
            rows.append(row)
            fields.append(item)
    data["fields"] = fields
    pointer = values["timestamp_pointer"].strip()
    data["timestamp"] = {"pointer": pointer, "unit": values["timestamp_unit"]} if pointer else None
    try:
        config = DataConfig.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            form.add_error(*_place(error, rows, values["rows"]))
        config = None
    return (None, form) if form.errors else (config, form)
