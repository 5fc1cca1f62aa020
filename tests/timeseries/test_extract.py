"""Extraction: JSON Pointers, number text and units, topic labels, timestamps, every failure reason."""

from __future__ import annotations

import dataclasses
import itertools
import json
from typing import Any

import pytest

from mqttproxy.protocol.topics import topic_matches
from mqttproxy.timeseries.extract import (
    BAD_TIMESTAMP,
    LABEL_CACHE_SIZE,
    NOT_A_NUMBER,
    NOT_FINITE,
    NOT_JSON,
    POINTER_MISSING,
    REASONS,
    TIMESTAMP_IN_FUTURE,
    TOPIC_MISMATCH,
    UNIT_MISMATCH,
    Extractor,
    Point,
    compile_pointer,
)
from mqttproxy.timeseries.models import DataConfig

NOW = 1_700_000_000_000  # received_ms of every message
TOPIC = "devices/d1/sensors/s1"


def extractor(
    fields: list[dict[str, Any]],
    *,
    topic: str = "devices/{device}/sensors/{sensor}",
    labels: dict[str, str] | None = None,
    timestamp: dict[str, Any] | None = None,
    max_future_ms: int = 300_000,
) -> Extractor:
    config = DataConfig.model_validate(
        {"id": "c", "topic": topic, "fields": fields, "labels": labels or {}, "timestamp": timestamp}
    )
    return Extractor(config, max_future_ms=max_future_ms)


def one_value(pointer: str | None, unit: str, payload: bytes) -> float | str:
    """The single field's value, or its single failure reason."""
    points, failures = extractor([{"metric": "m", "pointer": pointer, "unit": unit}]).extract(
        TOPIC, payload, NOW
    )
    assert len(points) + len(failures) == 1, (points, failures)
    return points[0].value if points else failures[0]


def test_reasons_are_distinct_snake_case() -> None:
    assert len(set(REASONS)) == len(REASONS) == 8
    for reason in REASONS:
        assert reason.replace("_", "").isalpha()
        assert reason == reason.lower()


# (id, pointer, payload, value or failure reason)
POINTERS: list[tuple[str, str, bytes, float | str]] = [
    ("top-level-key", "/temp", b'{"temp": 21.5}', 21.5),
    ("nested", "/a/b/c", b'{"a": {"b": {"c": 1.25}}}', 1.25),
    ("array-index", "/values/1", b'{"values": [10, 11, 12]}', 11.0),
    ("array-index-0", "/values/0", b'{"values": [10, 11]}', 10.0),
    ("array-in-array", "/m/1/0", b'{"m": [[1], [2, 3]]}', 2.0),
    ("object-in-array", "/list/0/v", b'{"list": [{"v": 7}]}', 7.0),
    ("root-array", "/2", b"[1, 2, 3]", 3.0),
    ("escaped-slash", "/a~1b", b'{"a/b": 1, "a": {"b": 2}}', 1.0),
    ("escaped-tilde", "/m~0n", b'{"m~n": 4}', 4.0),
    ("escaped-tilde-then-one", "/~01", b'{"~1": 5, "/": 6}', 5.0),
    ("nested-escapes", "/x~1y/~0", b'{"x/y": {"~": 8}}', 8.0),
    ("empty-key", "/", b'{"": 9}', 9.0),
    ("digit-key-in-object", "/v/01", b'{"v": {"01": 3}}', 3.0),
    ("root-number", "", b"21.5", 21.5),
    ("root-string-with-unit", "", b'"21.5 V"', 21.5),
    ("root-object", "", b'{"a": 1}', NOT_A_NUMBER),
    ("missing-key", "/hum", b'{"temp": 21.5}', POINTER_MISSING),
    ("missing-nested", "/a/x", b'{"a": {"b": 1}}', POINTER_MISSING),
    ("through-a-number", "/a/b", b'{"a": 1}', POINTER_MISSING),
    ("through-a-string", "/a/0", b'{"a": "xyz"}', POINTER_MISSING),
    ("through-null", "/a/b", b'{"a": null}', POINTER_MISSING),
    ("index-out-of-range", "/v/3", b'{"v": [1, 2, 3]}', POINTER_MISSING),
    ("index-dash", "/v/-", b'{"v": [1, 2, 3]}', POINTER_MISSING),
    ("index-leading-zero", "/v/01", b'{"v": [1, 2, 3]}', POINTER_MISSING),
    ("index-not-a-number", "/v/x", b'{"v": [1, 2, 3]}', POINTER_MISSING),
    ("index-negative", "/v/-1", b'{"v": [1, 2, 3]}', POINTER_MISSING),
    ("index-huge", "/v/99999999999999999999999", b'{"v": [1]}', POINTER_MISSING),
    ("index-non-ascii-digit", "/v/\u0661", b'{"v": [1, 2]}', POINTER_MISSING),
    ("key-on-root-array", "/a", b"[1]", POINTER_MISSING),
    ("key-on-root-number", "/a", b"5", POINTER_MISSING),
    ("unescaped-key-not-found", "/a~1b", b'{"a": {"b": 1}}', POINTER_MISSING),
]


@pytest.mark.parametrize(
    ("pointer", "payload", "expected"), [case[1:] for case in POINTERS], ids=[case[0] for case in POINTERS]
)
def test_json_pointer(pointer: str, payload: bytes, expected: float | str) -> None:
    assert one_value(pointer, "", payload) == expected


def test_compiled_pointer_tokens() -> None:
    assert compile_pointer("") == ()
    assert compile_pointer("/") == (("", -1),)
    assert compile_pointer("/a~1b/~01/0/10/01/-") == (
        ("a/b", -1),
        ("~1", -1),
        ("0", 0),
        ("10", 10),
        ("01", -1),
        ("-", -1),
    )


# (id, JSON value at /v, field unit, value or failure reason)
VALUES: list[tuple[str, str, str, float | str]] = [
    ("int", "42", "", 42.0),
    ("negative-int", "-7", "", -7.0),
    ("float", "-0.125", "", -0.125),
    ("exponent", "1.5e3", "", 1500.0),
    ("int-too-big-for-float", "1" + "0" * 400, "", NOT_FINITE),
    ("float-overflow", "1e999", "", NOT_FINITE),
    ("true", "true", "", 1.0),
    ("false", "false", "", 0.0),
    ("null", "null", "", NOT_A_NUMBER),
    ("object", '{"x": 1}', "", NOT_A_NUMBER),
    ("array", "[1]", "", NOT_A_NUMBER),
    ("nan-literal", "NaN", "", NOT_FINITE),
    ("infinity-literal", "Infinity", "", NOT_FINITE),
    ("minus-infinity-literal", "-Infinity", "", NOT_FINITE),
    # text
    ("text-number", '"27.93"', "", 27.93),
    ("text-unit-spaced", '"27.93 °C"', "°C", 27.93),
    ("text-unit-attached", '"27.93°C"', "°C", 27.93),
    ("text-exponent-unit", '"-4e-3 V"', "V", -0.004),
    ("text-percent-padded", '" 12 % "', "%", 12.0),
    ("text-plus-sign", '"+5"', "", 5.0),
    ("text-plus-sign-unit", '"+5 kPa"', "kPa", 5.0),
    ("text-trailing-dot", '"5."', "", 5.0),
    ("text-leading-dot", '".5"', "", 0.5),
    ("text-capital-exponent", '"1E3 W"', "W", 1000.0),
    ("text-tab-newline", '"\\t7\\n"', "", 7.0),
    ("text-unit-slash", '"3.6 km/h"', "km/h", 3.6),
    ("text-undeclared-unit-accepted", '"80.6 °F"', "", 80.6),
    ("text-unit-omitted", '"21"', "°C", 21.0),
    ("text-unit-nfkc-celsius-sign", '"21 ℃"', "°C", 21.0),
    ("text-unit-nfkc-micro-sign", '"5 µV"', "μV", 5.0),
    ("text-true", '"true"', "", 1.0),
    ("text-false", '"false"', "", 0.0),
    ("text-unit-mismatch", '"80.6 °F"', "°C", UNIT_MISMATCH),
    ("text-unit-case-matters", '"5 mV"', "MV", UNIT_MISMATCH),
    ("text-comma-decimal", '"27,93"', "", NOT_A_NUMBER),
    ("text-word", '"abc"', "", NOT_A_NUMBER),
    ("text-two-numbers", '"12 34"', "", NOT_A_NUMBER),
    ("text-empty", '""', "", NOT_A_NUMBER),
    ("text-blank", '"   "', "", NOT_A_NUMBER),
    ("text-two-word-unit", '"12 °C now"', "", NOT_A_NUMBER),
    ("text-two-dots", '"1.2.3"', "", NOT_A_NUMBER),
    ("text-sign-only", '"-"', "", NOT_A_NUMBER),
    ("text-dot-only", '"."', "", NOT_A_NUMBER),
    ("text-double-sign", '"--5"', "", NOT_A_NUMBER),
    ("text-hex", '"0x1F"', "", NOT_A_NUMBER),
    ("text-binary", '"0b101"', "", NOT_A_NUMBER),
    ("text-underscores", '"1_000"', "", NOT_A_NUMBER),
    ("text-arabic-digits", '"\u0661\u0662"', "", NOT_A_NUMBER),
    ("text-capital-true", '"True"', "", NOT_A_NUMBER),
    ("text-nan", '"nan"', "", NOT_FINITE),
    ("text-minus-inf", '"-inf"', "", NOT_FINITE),
    ("text-infinity-unit", '"Infinity °C"', "°C", NOT_FINITE),
    ("text-overflow", '"1e999 W"', "W", NOT_FINITE),
    ("text-overflow-plain", '"1e999"', "", NOT_FINITE),
]


@pytest.mark.parametrize(
    ("value", "unit", "expected"), [case[1:] for case in VALUES], ids=[case[0] for case in VALUES]
)
def test_values(value: str, unit: str, expected: float | str) -> None:
    assert one_value("/v", unit, f'{{"v": {value}}}'.encode()) == expected


# (id, whole payload, field unit, value or failure reason): fields whose pointer is null
PAYLOADS: list[tuple[str, bytes, str, float | str]] = [
    ("plain", b"27.93", "", 27.93),
    ("with-unit", "27.93 °C".encode(), "°C", 27.93),
    ("attached-unit", b"100kPa", "kPa", 100.0),
    ("padded", b" 12 % \r\n", "%", 12.0),
    ("int", b"-3", "", -3.0),
    ("true", b"true", "", 1.0),
    ("false", b"false\n", "", 0.0),
    ("json-string", b'"27.93"', "", 27.93),
    ("json-string-unit", '"27.93 °C"'.encode(), "°C", 27.93),
    ("nan-literal", b"NaN", "", NOT_FINITE),
    ("unit-mismatch", "80.6 °F".encode(), "°C", UNIT_MISMATCH),
    ("json-object", b'{"v": 1}', "", NOT_A_NUMBER),
    ("null", b"null", "", NOT_A_NUMBER),
    ("empty", b"", "", NOT_A_NUMBER),
    ("not-utf8", b"\xff\xfe2\x001\x00", "", NOT_A_NUMBER),
    ("json-string-escape", b'"2\\u0031"', "", NOT_A_NUMBER),
    ("json-string-inner-quote", b'"1"2"', "", NOT_A_NUMBER),
    ("unmatched-quote", b'"12', "", NOT_A_NUMBER),
]


@pytest.mark.parametrize(
    ("payload", "unit", "expected"), [case[1:] for case in PAYLOADS], ids=[case[0] for case in PAYLOADS]
)
def test_whole_payload(payload: bytes, unit: str, expected: float | str) -> None:
    assert one_value(None, unit, payload) == expected


# (id, payload): a field has a pointer, so the payload must be UTF-8 JSON
NOT_JSON_PAYLOADS: list[tuple[str, bytes]] = [
    ("empty", b""),
    ("truncated", b'{"v": 1'),
    ("not-json-text", b"21.5 C"),
    ("not-utf8", b'{"v": "\xff"}'),
    ("utf16", '{"v": 1}'.encode("utf-16")),
    ("encoded-surrogate", b'{"v": "\xed\xa0\x80"}'),
    ("trailing-garbage", b'{"v": 1} x'),
    ("single-quotes", b"{'v': 1}"),
    ("deeply-nested", b"[" * 100_000 + b"]" * 100_000),
    ("int-beyond-digit-limit", b'{"v": ' + b"1" * 5000 + b"}"),
]


@pytest.mark.parametrize(
    "payload", [case[1] for case in NOT_JSON_PAYLOADS], ids=[c[0] for c in NOT_JSON_PAYLOADS]
)
def test_not_json_fails_the_whole_message(payload: bytes) -> None:
    ex = extractor([{"metric": "a", "pointer": "/v"}, {"metric": "b", "pointer": None}])
    assert ex.extract(TOPIC, payload, NOW) == ([], [NOT_JSON])


def test_not_json_because_of_the_timestamp_pointer_alone() -> None:
    ex = extractor([{"metric": "a"}], timestamp={"pointer": "/ts"})
    assert ex.extract(TOPIC, b"21.5 C", NOW) == ([], [NOT_JSON])


def test_utf8_bom_is_skipped() -> None:
    assert one_value("/v", "", b'\xef\xbb\xbf{"v": 2}') == 2.0


def test_one_field_fails_and_another_succeeds() -> None:
    ex = extractor(
        [
            {"metric": "temp", "pointer": "/temp"},
            {"metric": "hum", "pointer": "/hum"},
            {"metric": "state", "pointer": "/on", "unit": "°C"},
        ]
    )
    points, failures = ex.extract(TOPIC, b'{"temp": 21.5, "on": "3 V"}', NOW)
    assert [(p.metric, p.value) for p in points] == [("temp", 21.5)]
    assert failures == [POINTER_MISSING, UNIT_MISMATCH]


def test_typical_message() -> None:
    ex = extractor(
        [
            {"metric": "temperature", "pointer": "/temp", "unit": "°C"},
            {"metric": "humidity", "pointer": "/hum"},
        ],
        labels={"site": "hall-7"},
        timestamp={"pointer": "/ts", "unit": "ms"},
    )
    points, failures = ex.extract(TOPIC, b'{"temp": 21.5, "hum": 40.1, "ts": 1700000000000}', NOW + 5)
    labels = (("device", "d1"), ("sensor", "s1"), ("site", "hall-7"))
    assert points == [
        Point("temperature", labels, 1_700_000_000_000, 21.5),
        Point("humidity", labels, 1_700_000_000_000, 40.1),
    ]
    assert failures == []
    assert points[0].labels is points[1].labels


def test_point_is_frozen_and_hashable() -> None:
    point = Point("m", (("a", "b"),), 1, 2.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        point.value = 3.0  # type: ignore[misc]
    assert hash(point) == hash(Point("m", (("a", "b"),), 1, 2.0))


def test_values_are_floats() -> None:
    ex = extractor([{"metric": "a", "pointer": "/a"}, {"metric": "b", "pointer": "/b"}])
    points, _ = ex.extract(TOPIC, b'{"a": 3, "b": true}', NOW)
    assert [type(point.value) for point in points] == [float, float]


# (id, data config topic, constant labels, message topic, labels or None for no match)
TOPICS: list[tuple[str, str, dict[str, str], str, tuple[tuple[str, str], ...] | None]] = [
    (
        "captures",
        "devices/{device}/sensors/{sensor}",
        {},
        "devices/d1/sensors/s1",
        (("device", "d1"), ("sensor", "s1")),
    ),
    (
        "captures-sorted-with-constants",
        "{zone}/{area}",
        {"b_site": "x", "zz": "y"},
        "z1/a1",
        (("area", "a1"), ("b_site", "x"), ("zone", "z1"), ("zz", "y")),
    ),
    ("constants-only", "plain/topic", {"site": "hall-7"}, "plain/topic", (("site", "hall-7"),)),
    ("no-labels", "plain/topic", {}, "plain/topic", ()),
    ("plain-mismatch", "plain/topic", {}, "plain/topics", None),
    ("literal-mismatch", "devices/{device}/sensors/{sensor}", {}, "devices/d1/actuators/s1", None),
    ("too-few-levels", "devices/{device}/sensors/{sensor}", {}, "devices/d1/sensors", None),
    ("too-many-levels", "devices/{device}/sensors/{sensor}", {}, "devices/d1/sensors/s1/x", None),
    ("empty-capture", "devices/{device}/t", {}, "devices//t", (("device", ""),)),
    ("unicode-capture", "devices/{device}", {}, "devices/Küche", (("device", "Küche"),)),
    ("plus", "devices/+/{sensor}", {}, "devices/d1/s1", (("sensor", "s1"),)),
    ("plus-mismatch-levels", "devices/+/{sensor}", {}, "devices/d1", None),
    ("hash", "devices/{device}/#", {}, "devices/d1/a/b/c", (("device", "d1"),)),
    ("hash-matches-parent", "devices/{device}/#", {}, "devices/d1", (("device", "d1"),)),
    ("hash-matches-empty-level", "devices/{device}/#", {}, "devices/d1/", (("device", "d1"),)),
    ("hash-too-short", "devices/{device}/#", {}, "devices", None),
    ("hash-alone", "#", {"k": "v"}, "any/thing", (("k", "v"),)),
    ("dollar-not-by-hash", "#", {}, "$SYS/broker/load", None),
    ("dollar-not-by-plus", "+/broker/load", {}, "$SYS/broker/load", None),
    ("dollar-not-by-capture", "{root}/broker/load", {}, "$SYS/broker/load", None),
    ("dollar-by-literal", "$SYS/{node}/load", {}, "$SYS/b1/load", (("node", "b1"),)),
    ("dollar-by-literal-hash", "$SYS/#", {}, "$SYS/b1/load", ()),
    ("dollar-later-level", "+/{x}", {}, "a/$b", (("x", "$b"),)),
    ("leading-slash", "/{x}", {}, "/a", (("x", "a"),)),
    ("leading-slash-mismatch", "/{x}", {}, "a", None),
]


@pytest.mark.parametrize(
    ("topic_filter", "labels", "topic", "expected"), [case[1:] for case in TOPICS], ids=[c[0] for c in TOPICS]
)
def test_topic_labels(
    topic_filter: str, labels: dict[str, str], topic: str, expected: tuple[tuple[str, str], ...] | None
) -> None:
    ex = extractor([{"metric": "m"}], topic=topic_filter, labels=labels)
    assert ex.labels_of(topic) == expected
    assert ex.labels_of(topic) == expected  # cached
    points, failures = ex.extract(topic, b"1", NOW)
    if expected is None:
        assert (points, failures) == ([], [TOPIC_MISMATCH])
    else:
        assert points == [Point("m", expected, NOW, 1.0)]


FILTERS = ["#", "+", "a/#", "a/+", "+/+", "a/b", "+/b/#", "$SYS/#", "$SYS/+", "a/+/c", "/+", "+/#"]
NAMES = ["a", "a/b", "a/b/c", "a/c", "b", "$SYS", "$SYS/x", "$SYS/x/y", "/a", "a/", "a//c", "x/b/y", "/"]


@pytest.mark.parametrize(("topic_filter", "topic"), list(itertools.product(FILTERS, NAMES)))
def test_matching_agrees_with_the_broker(topic_filter: str, topic: str) -> None:
    as_captures = "/".join(
        f"{{l{index}}}" if level == "+" else level for index, level in enumerate(topic_filter.split("/"))
    )
    for variant in (topic_filter, as_captures):
        matched = extractor([{"metric": "m"}], topic=variant).labels_of(topic) is not None
        assert matched == topic_matches(topic_filter, topic), variant


def test_label_cache_is_bounded() -> None:
    ex = extractor([{"metric": "m"}])
    for number in range(LABEL_CACHE_SIZE * 2 + 5):
        assert ex.labels_of(f"devices/d{number}/sensors/s") == (("device", f"d{number}"), ("sensor", "s"))
        assert len(ex._cache) <= LABEL_CACHE_SIZE
    assert ex.extract("devices/d0/sensors/s", b"2", NOW)[0][0].labels == (("device", "d0"), ("sensor", "s"))


# (id, unit, JSON value at /ts, timestamp_ms or failure reason)
TIMESTAMPS: list[tuple[str, str, str, int | str]] = [
    ("seconds", "s", "1700000000", 1_700_000_000_000),
    ("fractional-seconds", "s", "1700000000.123", 1_700_000_000_123),
    ("fractional-seconds-rounded", "s", "1699999999.9996", 1_700_000_000_000),
    ("milliseconds", "ms", "1699999999123", 1_699_999_999_123),
    ("milliseconds-float", "ms", "1699999999123.0", 1_699_999_999_123),
    ("microseconds-floored", "us", "1699999999123999", 1_699_999_999_123),
    ("nanoseconds-floored", "ns", "1699999999123999999", 1_699_999_999_123),
    ("nanoseconds-float", "ns", "1.699999999123e18", 1_699_999_999_123),
    ("zero", "ms", "0", 0),
    ("just-within-max-future", "ms", str(NOW + 300_000), NOW + 300_000),
    ("past-is-fine", "s", "1", 1000),
    ("in-future", "ms", str(NOW + 300_001), TIMESTAMP_IN_FUTURE),
    ("seconds-declared-as-ms-in-future", "s", "1700000000000", TIMESTAMP_IN_FUTURE),
    ("far-future-float", "s", "1e300", TIMESTAMP_IN_FUTURE),
    ("overflowing-float", "s", "1.7e308", BAD_TIMESTAMP),
    ("negative", "ms", "-1", BAD_TIMESTAMP),
    ("negative-float", "s", "-0.5", BAD_TIMESTAMP),
    ("nan", "ms", "NaN", BAD_TIMESTAMP),
    ("infinity", "ms", "Infinity", BAD_TIMESTAMP),
    ("text", "ms", '"1700000000000"', BAD_TIMESTAMP),
    ("iso-text", "ms", '"2023-11-14T22:13:20Z"', BAD_TIMESTAMP),
    ("boolean", "s", "true", BAD_TIMESTAMP),
    ("null", "ms", "null", BAD_TIMESTAMP),
    ("object", "ms", '{"t": 1}', BAD_TIMESTAMP),
]


@pytest.mark.parametrize(
    ("unit", "raw", "expected"), [case[1:] for case in TIMESTAMPS], ids=[case[0] for case in TIMESTAMPS]
)
def test_payload_timestamps(unit: str, raw: str, expected: int | str) -> None:
    ex = extractor(
        [{"metric": "a", "pointer": "/v"}, {"metric": "b", "pointer": "/w"}],
        timestamp={"pointer": "/meta/ts", "unit": unit},
    )
    points, failures = ex.extract(TOPIC, f'{{"v": 1, "meta": {{"ts": {raw}}}}}'.encode(), NOW)
    if isinstance(expected, str):
        assert (points, failures) == ([], [expected])
    else:
        assert [point.timestamp_ms for point in points] == [expected]
        assert failures == [POINTER_MISSING]


def test_missing_timestamp_fails_the_whole_message() -> None:
    ex = extractor([{"metric": "a", "pointer": "/v"}], timestamp={"pointer": "/ts"})
    assert ex.extract(TOPIC, b'{"v": 1}', NOW) == ([], [BAD_TIMESTAMP])


def test_max_future_ms_is_configurable() -> None:
    ex = extractor([{"metric": "a", "pointer": "/v"}], timestamp={"pointer": "/ts"}, max_future_ms=0)
    assert ex.extract(TOPIC, json.dumps({"v": 1, "ts": NOW + 1}).encode(), NOW) == ([], [TIMESTAMP_IN_FUTURE])
    assert ex.extract(TOPIC, json.dumps({"v": 1, "ts": NOW}).encode(), NOW)[0][0].timestamp_ms == NOW


def test_receive_time_without_a_timestamp_pointer() -> None:
    ex = extractor([{"metric": "a", "pointer": "/v"}])
    assert ex.extract(TOPIC, b'{"v": 1, "ts": 5}', NOW)[0][0].timestamp_ms == NOW


def test_topic_mismatch_before_looking_at_the_payload() -> None:
    ex = extractor([{"metric": "a", "pointer": "/v"}], timestamp={"pointer": "/ts"})
    assert ex.extract("other/topic", b"\xff", NOW) == ([], [TOPIC_MISMATCH])


def test_mixed_pointer_and_whole_payload_fields() -> None:
    ex = extractor([{"metric": "a", "pointer": ""}, {"metric": "b", "pointer": None, "unit": "V"}])
    points, failures = ex.extract(TOPIC, b"3.5", NOW)
    assert [(p.metric, p.value) for p in points] == [("a", 3.5), ("b", 3.5)]
    assert failures == []
    points, failures = ex.extract(TOPIC, b'"3.5 V"', NOW)
    assert [(p.metric, p.value) for p in points] == [("a", 3.5), ("b", 3.5)]


@pytest.mark.parametrize(
    "payload",
    [b'{"a": 1.5, "b": "x", "ts": 1699999999000}', b'{"a": 1.5, "b": 2}', b"not json", b'{"b": 3}'],
)
def test_read_is_extract_unwrapped(payload: bytes) -> None:
    ex = extractor(
        [{"metric": "a", "pointer": "/a"}, {"metric": "b", "pointer": "/b"}],
        timestamp={"pointer": "/ts", "unit": "ms"},
    )
    keys, values, when, failures = ex.read(TOPIC, payload, NOW)
    points, extract_failures = ex.extract(TOPIC, payload, NOW)
    assert [
        Point(metric, labels, when, value) for (metric, labels), value in zip(keys, values, strict=True)
    ] == points
    assert failures == extract_failures


def test_read_gives_the_same_series_key_objects_for_a_topic() -> None:
    ex = extractor([{"metric": "a", "pointer": "/a"}, {"metric": "b", "pointer": "/b"}])
    first, _, _, _ = ex.read(TOPIC, b'{"a": 1, "b": 2}', NOW)
    again, _, _, _ = ex.read(TOPIC, b'{"a": 3, "b": 4}', NOW + 1)
    assert first == [("a", (("device", "d1"), ("sensor", "s1"))), ("b", (("device", "d1"), ("sensor", "s1")))]
    assert all(key is same for key, same in zip(first, again, strict=True))
    assert ex.read("other/topic", b"{}", NOW) == ([], [], NOW, ["topic_mismatch"])
