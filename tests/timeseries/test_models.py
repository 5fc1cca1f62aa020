"""Data configs: defaults, the subscribed filter, round trips and every validation rule."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from pydantic import ValidationError

from mqttproxy.timeseries.models import DataConfig, Field, PayloadTimestamp

EXAMPLE: dict[str, Any] = {
    "id": "room-sensors",
    "topic": "devices/{device}/sensors/{sensor}",
    "fields": [
        {"metric": "temperature", "pointer": "/temp", "type": "gauge", "unit": "°C", "retention_days": 30},
        {"metric": "battery_volts", "pointer": None},
    ],
    "labels": {"site": "hall-7"},
    "timestamp": {"pointer": "/ts", "unit": "ms"},
    "enabled": True,
}


def test_defaults() -> None:
    config = DataConfig.model_validate({"id": "a", "topic": "t", "fields": [{"metric": "m"}]})
    assert config.labels == {}
    assert config.timestamp is None
    assert config.enabled
    assert config.fields == [Field(metric="m")]
    field = config.fields[0]
    assert (field.pointer, field.type, field.unit, field.retention_days) == (None, "gauge", "", 30.0)
    assert PayloadTimestamp(pointer="/ts").unit == "ms"


@pytest.mark.parametrize(
    ("topic", "expected_filter", "captures"),
    [
        ("devices/{device}/sensors/{sensor}", "devices/+/sensors/+", ((1, "device"), (3, "sensor"))),
        ("plain/topic", "plain/topic", ()),
        ("a/+/{b}/#", "a/+/+/#", ((2, "b"),)),
        ("{site}", "+", ((0, "site"),)),
        ("#", "#", ()),
        ("$SYS/{broker}/load", "$SYS/+/load", ((1, "broker"),)),
        ("a//{x}/", "a//+/", ((2, "x"),)),
        ("{_Under_1}/°C", "+/°C", ((0, "_Under_1"),)),
    ],
    ids=[
        "two-captures",
        "plain",
        "mixed-wildcards",
        "capture-only",
        "hash-only",
        "dollar",
        "empty-levels",
        "unicode",
    ],
)
def test_filter_and_captures(topic: str, expected_filter: str, captures: tuple[tuple[int, str], ...]) -> None:
    config = DataConfig.model_validate({**EXAMPLE, "topic": topic, "labels": {}})
    assert config.filter == expected_filter
    assert config.captures == captures


@pytest.mark.parametrize(
    "body",
    [
        EXAMPLE,
        {"id": "a", "topic": "t", "fields": [{"metric": "m"}]},
        {**EXAMPLE, "timestamp": None, "enabled": False, "labels": {}},
        {**EXAMPLE, "fields": [{"metric": f"m{i}", "pointer": f"/v/{i}"} for i in range(32)]},
        {**EXAMPLE, "fields": [{"metric": "a:b_c", "pointer": "", "type": "counter", "retention_days": 0.5}]},
        {**EXAMPLE, "fields": [{"metric": "m", "pointer": "/a~0b/c~1d/0/-"}]},
        {**EXAMPLE, "labels": {f"l{i}": "v" * 256 for i in range(16)}},
        {**EXAMPLE, "timestamp": {"pointer": "/meta/time", "unit": "ns"}},
    ],
    ids=["example", "minimal", "disabled", "32-fields", "root-counter", "escaped-pointer", "16-labels", "ns"],
)
def test_round_trip(body: dict[str, Any]) -> None:
    config = DataConfig.model_validate(body)
    dumped = config.model_dump(mode="json")
    assert DataConfig.model_validate(dumped) == config
    assert DataConfig.model_validate_json(config.model_dump_json()) == config
    for key, value in body.items():
        assert dumped[key] == value or key == "fields"


def test_example_dump_is_complete() -> None:
    dumped = DataConfig.model_validate(EXAMPLE).model_dump(mode="json")
    assert dumped["fields"][1] == {
        "metric": "battery_volts",
        "pointer": None,
        "type": "gauge",
        "unit": "",
        "retention_days": 30.0,
    }
    assert dumped["timestamp"] == {"pointer": "/ts", "unit": "ms"}


def _with(path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    body = copy.deepcopy(EXAMPLE)
    target: Any = body
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return body


_DELETE = object()

# (id, path to change in EXAMPLE, new value, pydantic error location, text in the message)
REJECTIONS: list[tuple[str, tuple[str | int, ...], Any, tuple[str | int, ...], str]] = [
    ("unknown-top-level", ("bogus",), 1, ("bogus",), "Extra inputs"),
    ("unknown-field-key", ("fields", 0, "scale"), 2, ("fields", 0, "scale"), "Extra inputs"),
    ("unknown-timestamp-key", ("timestamp", "zone"), "UTC", ("timestamp", "zone"), "Extra inputs"),
    ("id-missing", ("id",), _DELETE, ("id",), "Field required"),
    ("id-empty", ("id",), "", ("id",), "bad id"),
    ("id-upper", ("id",), "Room", ("id",), "lowercase"),
    ("id-leading-dash", ("id",), "-a", ("id",), "bad id"),
    ("id-65", ("id",), "a" * 65, ("id",), "bad id"),
    ("id-trailing-newline", ("id",), "a\n", ("id",), "bad id"),
    ("id-slash", ("id",), "a/b", ("id",), "bad id"),
    ("topic-missing", ("topic",), _DELETE, ("topic",), "Field required"),
    ("topic-empty", ("topic",), "", ("topic",), "at least one character"),
    ("topic-nul", ("topic",), "a/\x00", ("topic",), "U+0000"),
    ("topic-too-long", ("topic",), "é" * 32768, ("topic",), "65535 bytes"),
    ("topic-surrogate", ("topic",), "a/\ud800", ("topic",), "surrogate"),
    ("topic-empty-braces", ("topic",), "a/{}/b", ("topic",), "needs a label name"),
    ("topic-brace-in-level", ("topic",), "a{b}", ("topic",), "whole topic level"),
    ("topic-brace-suffix", ("topic",), "a/{b}c", ("topic",), "whole topic level"),
    ("topic-unclosed", ("topic",), "a/{b", ("topic",), "whole topic level"),
    ("topic-nested", ("topic",), "a/{{b}}", ("topic",), "whole topic level"),
    ("topic-lone-close", ("topic",), "a/b}", ("topic",), "whole topic level"),
    ("topic-bad-label", ("topic",), "a/{9x}", ("topic",), "bad label name '9x'"),
    ("topic-label-dash", ("topic",), "a/{dev-id}", ("topic",), "bad label name"),
    ("topic-label-reserved", ("topic",), "a/{__name__}", ("topic",), "bad label name"),
    ("topic-label-65", ("topic",), "a/{" + "x" * 65 + "}", ("topic",), "bad label name"),
    ("topic-duplicate-label", ("topic",), "{d}/x/{d}", ("topic",), "already captured at level 1"),
    ("topic-hash-not-last", ("topic",), "a/#/b", ("topic",), "'#' must be the last level"),
    ("topic-plus-mixed", ("topic",), "a+/b", ("topic",), "wildcard"),
    ("topic-hash-mixed", ("topic",), "a/b#", ("topic",), "wildcard"),
    ("topic-wildcard-in-braces", ("topic",), "a/{+}", ("topic",), "wildcard"),
    ("topic-not-string", ("topic",), 7, ("topic",), "valid string"),
    ("fields-missing", ("fields",), _DELETE, ("fields",), "Field required"),
    ("fields-empty", ("fields",), [], ("fields",), "at least 1"),
    ("fields-33", ("fields",), [{"metric": f"m{i}"} for i in range(33)], ("fields",), "at most 32"),
    ("fields-duplicate-metric", ("fields", 1, "metric"), "temperature", ("fields",), "'temperature'"),
    ("metric-missing", ("fields", 0, "metric"), _DELETE, ("fields", 0, "metric"), "Field required"),
    ("metric-empty", ("fields", 0, "metric"), "", ("fields", 0, "metric"), "bad metric name"),
    ("metric-digit", ("fields", 0, "metric"), "1temp", ("fields", 0, "metric"), "bad metric name"),
    ("metric-dash", ("fields", 1, "metric"), "a-b", ("fields", 1, "metric"), "bad metric name"),
    ("metric-dot", ("fields", 0, "metric"), "a.b", ("fields", 0, "metric"), "bad metric name"),
    ("metric-129", ("fields", 0, "metric"), "m" * 129, ("fields", 0, "metric"), "bad metric name"),
    ("pointer-no-slash", ("fields", 0, "pointer"), "temp", ("fields", 0, "pointer"), "starts with '/'"),
    ("pointer-bad-escape", ("fields", 0, "pointer"), "/a~2", ("fields", 0, "pointer"), "'~0'"),
    ("pointer-trailing-tilde", ("fields", 0, "pointer"), "/a~", ("fields", 0, "pointer"), "'~0'"),
    ("pointer-too-long", ("fields", 0, "pointer"), "/" + "a" * 1024, ("fields", 0, "pointer"), "1024"),
    ("pointer-not-string", ("fields", 0, "pointer"), 3, ("fields", 0, "pointer"), "valid string"),
    ("type-unknown", ("fields", 0, "type"), "histogram", ("fields", 0, "type"), "'gauge' or 'counter'"),
    ("unit-33", ("fields", 0, "unit"), "u" * 33, ("fields", 0, "unit"), "at most 32"),
    ("unit-space", ("fields", 0, "unit"), "m s", ("fields", 0, "unit"), "no spaces"),
    ("retention-zero", ("fields", 0, "retention_days"), 0, ("fields", 0, "retention_days"), "greater than 0"),
    ("retention-negative", ("fields", 0, "retention_days"), -1, ("fields", 0, "retention_days"), "greater"),
    ("retention-big", ("fields", 0, "retention_days"), 36501, ("fields", 0, "retention_days"), "36500"),
    ("retention-text", ("fields", 0, "retention_days"), "long", ("fields", 0, "retention_days"), "number"),
    ("labels-bad-name", ("labels", "9site"), "x", ("labels",), "bad label name '9site'"),
    ("labels-reserved-name", ("labels", "__name__"), "x", ("labels",), "bad label name"),
    ("labels-clash", ("labels", "device"), "x", ("labels",), "already captured from the topic"),
    ("labels-long-value", ("labels", "site"), "v" * 257, ("labels",), "256"),
    ("labels-value-not-string", ("labels", "site"), 7, ("labels", "site"), "valid string"),
    ("labels-17", ("labels",), {f"l{i}": "v" for i in range(17)}, ("labels",), "at most 16"),
    ("timestamp-no-pointer", ("timestamp", "pointer"), _DELETE, ("timestamp", "pointer"), "Field required"),
    ("timestamp-root", ("timestamp", "pointer"), "", ("timestamp", "pointer"), "not be ''"),
    ("timestamp-bad-pointer", ("timestamp", "pointer"), "ts", ("timestamp", "pointer"), "starts with '/'"),
    ("timestamp-null-pointer", ("timestamp", "pointer"), None, ("timestamp", "pointer"), "valid string"),
    ("timestamp-unit", ("timestamp", "unit"), "min", ("timestamp", "unit"), "'s', 'ms', 'us' or 'ns'"),
    ("enabled-text", ("enabled",), "perhaps", ("enabled",), "valid boolean"),
]


@pytest.mark.parametrize(
    ("path", "value", "location", "text"),
    [case[1:] for case in REJECTIONS],
    ids=[case[0] for case in REJECTIONS],
)
def test_rejections(
    path: tuple[str | int, ...], value: Any, location: tuple[str | int, ...], text: str
) -> None:
    with pytest.raises(ValidationError) as caught:
        DataConfig.model_validate(_with(path, value))
    errors = caught.value.errors()
    assert len(errors) == 1, errors
    assert errors[0]["loc"] == location
    assert text in errors[0]["msg"]


def test_models_are_frozen() -> None:
    config = DataConfig.model_validate(EXAMPLE)
    with pytest.raises(ValidationError):
        config.enabled = False
