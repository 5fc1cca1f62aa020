"""The pure shadow functions (mqttproxy/shadow/document.py), table by table from the contract.

Each table quotes the contract rule it checks (README.md, "Device shadows").
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mqttproxy.shadow.document import (
    Limits,
    Shadow,
    ShadowError,
    apply_update,
    delta,
    delta_metadata,
    parse_update,
    touched_metadata,
)

LIMITS = Limits()
T0 = 1_700_000_000
T1 = T0 + 60
STAMP0 = {"timestamp": T0}
STAMP1 = {"timestamp": T1}


def encode(document: Any) -> bytes:
    return json.dumps(document).encode()


def update(shadow: Shadow, document: dict[str, Any], now: int = T1, limits: Limits = LIMITS) -> Shadow:
    return apply_update(shadow, parse_update(encode(document), limits), now, limits)


def shadow_with(state: dict[str, Any], now: int = T0) -> Shadow:
    """A stored shadow holding ``state``, written in one update at ``now`` (version 1)."""
    return update(Shadow(), {"state": state}, now)


def rejection(action: Any) -> tuple[int, str]:
    with pytest.raises(ShadowError) as caught:
        action()
    return caught.value.code, caught.value.message


def nested(depth: int, leaf: Any = 1) -> dict[str, Any]:
    """An object with ``depth`` levels of keys: {"k1": {"k2": ... {"kN": leaf}}}."""
    value: Any = leaf
    for level in range(depth, 0, -1):
        value = {f"k{level}": value}
    return value  # type: ignore[no-any-return]


# --- merge ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Merge:
    id: str
    before: dict[str, Any] | None  # the stored state; None: no shadow yet
    state: Any  # the request's "state"
    after: dict[str, Any]


MERGES = [
    # "Update deep-merges the given fields; creates the shadow if absent."
    Merge("creates-the-shadow", None, {"desired": {"a": 1}}, {"desired": {"a": 1}}),
    Merge("adds-a-key", {"desired": {"a": 1}}, {"desired": {"b": 2}}, {"desired": {"a": 1, "b": 2}}),
    Merge(
        "replaces-a-leaf", {"desired": {"a": 1, "b": 2}}, {"desired": {"a": 3}}, {"desired": {"a": 3, "b": 2}}
    ),
    Merge(
        "sections-independent",
        {"desired": {"a": 1}, "reported": {"a": 0}},
        {"reported": {"b": 5}},
        {"desired": {"a": 1}, "reported": {"a": 0, "b": 5}},
    ),
    Merge(
        "both-sections-at-once",
        None,
        {"desired": {"a": 1}, "reported": {"a": 2}},
        {"desired": {"a": 1}, "reported": {"a": 2}},
    ),
    Merge(
        "nested-merge",
        {"desired": {"light": {"color": "red", "level": 1}, "fan": 0}},
        {"desired": {"light": {"level": 5, "blink": True}}},
        {"desired": {"light": {"color": "red", "level": 5, "blink": True}, "fan": 0}},
    ),
    Merge(
        "deep-nested-merge",
        {"reported": {"a": {"b": {"c": {"d": 1, "e": 2}}}}},
        {"reported": {"a": {"b": {"c": {"d": 9}, "x": 3}}}},
        {"reported": {"a": {"b": {"c": {"d": 9, "e": 2}, "x": 3}}}},
    ),
    Merge(
        "object-replaces-leaf",
        {"desired": {"a": 1}},
        {"desired": {"a": {"b": 2}}},
        {"desired": {"a": {"b": 2}}},
    ),
    Merge("leaf-replaces-object", {"desired": {"a": {"b": 2}}}, {"desired": {"a": 3}}, {"desired": {"a": 3}}),
    # "A null leaf deletes that key"
    Merge(
        "null-leaf-deletes", {"desired": {"a": 1, "b": 2}}, {"desired": {"a": None}}, {"desired": {"b": 2}}
    ),
    Merge(
        "null-nested-leaf-deletes",
        {"desired": {"light": {"color": "red", "level": 1}}},
        {"desired": {"light": {"color": None}}},
        {"desired": {"light": {"level": 1}}},
    ),
    Merge(
        "null-object-deletes",
        {"desired": {"a": {"b": 1}, "c": 2}},
        {"desired": {"a": None}},
        {"desired": {"c": 2}},
    ),
    Merge(
        "null-missing-key-is-harmless",
        {"desired": {"a": 1}},
        {"desired": {"zz": None}},
        {"desired": {"a": 1}},
    ),
    Merge(
        "null-and-set-together",
        {"desired": {"a": 1, "b": 2}},
        {"desired": {"a": None, "c": 3}},
        {"desired": {"b": 2, "c": 3}},
    ),
    # '"desired": null removes the whole section'
    Merge(
        "desired-null-clears-section",
        {"desired": {"a": 1}, "reported": {"a": 2}},
        {"desired": None},
        {"reported": {"a": 2}},
    ),
    Merge(
        "reported-null-clears-section",
        {"desired": {"a": 1}, "reported": {"a": 2}},
        {"reported": None},
        {"desired": {"a": 1}},
    ),
    Merge(
        "both-sections-null",
        {"desired": {"a": 1}, "reported": {"a": 2}},
        {"desired": None, "reported": None},
        {},
    ),
    # '"state": null does not delete the shadow. {} is a valid shadow.'
    Merge("state-null-keeps-state", {"desired": {"a": 1}}, None, {"desired": {"a": 1}}),
    Merge("state-empty-keeps-state", {"desired": {"a": 1}}, {}, {"desired": {"a": 1}}),
    Merge("empty-shadow-created", None, {}, {}),
    # "Arrays are values: replaced whole."
    Merge(
        "array-replaced-whole",
        {"desired": {"l": [1, 2, 3]}},
        {"desired": {"l": [4]}},
        {"desired": {"l": [4]}},
    ),
    Merge("array-emptied", {"desired": {"l": [1, 2]}}, {"desired": {"l": []}}, {"desired": {"l": []}}),
    Merge(
        "array-of-objects-not-merged",
        {"desired": {"l": [{"a": 1, "b": 2}]}},
        {"desired": {"l": [{"a": 5}]}},
        {"desired": {"l": [{"a": 5}]}},
    ),
    Merge(
        "array-replaces-object",
        {"desired": {"a": {"b": 1}}},
        {"desired": {"a": [1]}},
        {"desired": {"a": [1]}},
    ),
    Merge(
        "object-replaces-array",
        {"desired": {"a": [1]}},
        {"desired": {"a": {"b": 1}}},
        {"desired": {"a": {"b": 1}}},
    ),
    # "Only state.desired and state.reported are stored; other keys are ignored."
    Merge(
        "other-state-keys-ignored",
        {"desired": {"a": 1}},
        {"desired": {"b": 2}, "delta": {"x": 1}, "color": "red"},
        {"desired": {"a": 1, "b": 2}},
    ),
    Merge(
        "json-types-kept",
        None,
        {
            "reported": {
                "s": "x",
                "i": -3,
                "f": 2.5,
                "t": True,
                "n0": False,
                "o": {},
                "l": ["a", 1, {"b": False}],
            }
        },
        {
            "reported": {
                "s": "x",
                "i": -3,
                "f": 2.5,
                "t": True,
                "n0": False,
                "o": {},
                "l": ["a", 1, {"b": False}],
            }
        },
    ),
]


@pytest.mark.parametrize("case", MERGES, ids=[case.id for case in MERGES])
def test_update_merges_as_the_contract_says(case: Merge) -> None:
    before = Shadow() if case.before is None else shadow_with(case.before)
    after = update(before, {"state": case.state, "clientToken": "c", "version": before.version})
    assert after.state == case.after
    assert after.exists
    assert after.version == before.version + 1  # "Version +1 on every accepted update"


def test_update_does_not_change_the_shadow_it_is_given() -> None:
    before = shadow_with({"desired": {"a": {"b": 1}, "l": [1]}, "reported": {"a": {"b": 0}}})
    frozen = copy.deepcopy(before)
    update(before, {"state": {"desired": {"a": {"b": None, "c": 2}, "l": [2]}, "reported": None}})
    with pytest.raises(ShadowError):
        update(before, {"state": {"desired": {"big": "x" * 9000}}})
    assert before == frozen


def test_other_top_level_keys_are_ignored() -> None:
    after = update(
        Shadow(), {"state": {"desired": {"a": 1}}, "metadata": {"x": 1}, "timestamp": 5, "foo": []}
    )
    assert after.state == {"desired": {"a": 1}}
    assert after.metadata == {"desired": {"a": STAMP1}}


# --- metadata -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ({"desired": {"a": 1}}, {"desired": {"a": STAMP1}}),
        (
            {"desired": {"a": 1, "b": {"c": "x", "d": {"e": False}}}},
            {"desired": {"a": STAMP1, "b": {"c": STAMP1, "d": {"e": STAMP1}}}},
        ),
        ({"reported": {"l": [1, {"x": 2}]}}, {"reported": {"l": STAMP1}}),  # an array is one value
        ({"desired": {"a": None}}, {"desired": {"a": STAMP1}}),  # a null leaf is touched too
        ({"desired": {"a": 1}, "reported": {"b": 2}}, {"desired": {"a": STAMP1}, "reported": {"b": STAMP1}}),
        ({}, {}),
    ],
    ids=["leaf", "nested", "array", "null-leaf", "both-sections", "empty"],
)
def test_accepted_metadata_has_one_timestamp_per_leaf_touched(
    state: dict[str, Any], expected: dict[str, Any]
) -> None:
    request = parse_update(encode({"state": state}), LIMITS)
    assert request.state is not None
    assert touched_metadata(request.state, STAMP1) == expected


def test_stored_metadata_keeps_each_leafs_own_timestamp() -> None:
    shadow = shadow_with({"desired": {"a": 1, "b": {"c": 1, "d": 2}, "l": [1]}}, now=T0)
    shadow = update(
        shadow, {"state": {"desired": {"b": {"c": 5}, "l": [2, 3]}, "reported": {"a": 1}}}, now=T1
    )
    assert shadow.metadata == {
        "desired": {"a": STAMP0, "b": {"c": STAMP1, "d": STAMP0}, "l": STAMP1},
        "reported": {"a": STAMP1},
    }


@pytest.mark.parametrize(
    ("before", "state", "metadata"),
    [
        ({"desired": {"a": 1, "b": 2}}, {"desired": {"a": None}}, {"desired": {"b": STAMP0}}),
        (
            {"desired": {"a": {"b": 1, "c": 2}}},
            {"desired": {"a": {"b": None}}},
            {"desired": {"a": {"c": STAMP0}}},
        ),
        ({"desired": {"a": {"b": 1}}}, {"desired": {"a": 7}}, {"desired": {"a": STAMP1}}),
        ({"desired": {"a": 7}}, {"desired": {"a": {"b": 1}}}, {"desired": {"a": {"b": STAMP1}}}),
        ({"desired": {"a": 1}, "reported": {"a": 1}}, {"desired": None}, {"reported": {"a": STAMP0}}),
        ({"desired": {"a": {"b": 1}}}, {"desired": {"a": None}}, {"desired": {}}),
    ],
    ids=[
        "leaf-deleted",
        "nested-leaf-deleted",
        "object-to-leaf",
        "leaf-to-object",
        "section-cleared",
        "object-deleted",
    ],
)
def test_stored_metadata_follows_deletes_and_replacements(
    before: dict[str, Any], state: dict[str, Any], metadata: dict[str, Any]
) -> None:
    shadow = update(shadow_with(before, now=T0), {"state": state}, now=T1)
    assert shadow.metadata == metadata


LEAF = "leaf"


def state_shape(value: Any) -> Any:
    """A state with every non-object value (arrays too) replaced by ``LEAF``."""
    if isinstance(value, dict):
        return {key: state_shape(item) for key, item in value.items()}
    return LEAF


def metadata_shape(value: Any) -> Any:
    """Metadata with every ``{"timestamp": <int>}`` replaced by ``LEAF``."""
    if isinstance(value, dict) and set(value) == {"timestamp"} and type(value["timestamp"]) is int:
        return LEAF
    if isinstance(value, dict):
        return {key: metadata_shape(item) for key, item in value.items()}
    return ("not metadata", value)


KEYS = st.sampled_from(["a", "b", "c", "timestamp"])
SCALARS = st.one_of(st.integers(-5, 5), st.booleans(), st.text("xyz", max_size=2))
VALUES = st.recursive(
    st.one_of(SCALARS, st.lists(SCALARS, max_size=3)),
    lambda children: st.dictionaries(KEYS, st.one_of(children, st.none()), max_size=3),
    max_leaves=8,
)
SECTION = st.one_of(st.none(), st.dictionaries(KEYS, st.one_of(VALUES, st.none()), max_size=3))
STATES = st.fixed_dictionaries({}, optional={"desired": SECTION, "reported": SECTION})


@settings(max_examples=150, deadline=None)
@given(st.lists(STATES, min_size=1, max_size=6))
def test_stored_metadata_mirrors_the_state(states: list[dict[str, Any]]) -> None:
    """After any sequence of updates: one timestamp per leaf of the state, nothing else."""
    shadow = Shadow()
    for step, state in enumerate(states):
        shadow = update(shadow, {"state": state}, now=T0 + step)
        assert shadow.state is not None
        assert metadata_shape(shadow.metadata) == state_shape(shadow.state)
    assert shadow.version == len(states)


# --- delta ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Delta:
    id: str
    desired: Any
    reported: Any
    expected: dict[str, Any]


DELTAS = [
    Delta("equal", {"a": 1, "b": {"c": [1, 2]}}, {"a": 1, "b": {"c": [1, 2]}}, {}),
    Delta("leaf-differs", {"a": 1, "b": 2}, {"a": 0, "b": 2}, {"a": 1}),
    # "desired keys missing from reported are included"
    Delta("missing-from-reported", {"a": 1, "b": 2}, {"a": 1}, {"b": 2}),
    Delta("no-reported-section", {"a": 1, "b": {"c": 2}}, None, {"a": 1, "b": {"c": 2}}),
    Delta("no-desired-section", None, {"a": 1}, {}),
    # "reported-only keys are left out"
    Delta("reported-only-left-out", {"a": 1}, {"a": 1, "extra": 2, "more": {"x": 1}}, {}),
    # "nested differences keep their path with only the differing leaves"
    Delta(
        "nested-only-differing-leaves",
        {"light": {"color": "red", "level": 5, "mode": {"blink": True, "rate": 2}}},
        {"light": {"color": "red", "level": 1, "mode": {"blink": True, "rate": 3}}},
        {"light": {"level": 5, "mode": {"rate": 2}}},
    ),
    Delta("nested-missing-object", {"a": {"b": {"c": 1}}}, {"x": 1}, {"a": {"b": {"c": 1}}}),
    Delta("nested-equal-object-left-out", {"a": {"b": 1}, "c": 2}, {"a": {"b": 1}, "c": 3}, {"c": 2}),
    # "a differing array is copied whole"
    Delta("array-differs", {"l": [1, 2, 3]}, {"l": [1, 2]}, {"l": [1, 2, 3]}),
    Delta("array-order-differs", {"l": [1, 2]}, {"l": [2, 1]}, {"l": [1, 2]}),
    Delta(
        "array-of-objects-differs",
        {"l": [{"a": 1}, {"b": 2}]},
        {"l": [{"a": 1}, {"b": 3}]},
        {"l": [{"a": 1}, {"b": 2}]},
    ),
    Delta("array-equal", {"l": [{"a": 1}]}, {"l": [{"a": 1}]}, {}),
    Delta("object-vs-leaf", {"a": {"b": 1}}, {"a": 5}, {"a": {"b": 1}}),
    Delta("leaf-vs-object", {"a": 5}, {"a": {"b": 1}}, {"a": 5}),
    Delta("array-vs-object", {"a": [1]}, {"a": {"0": 1}}, {"a": [1]}),
    Delta("string-vs-number", {"a": "1"}, {"a": 1}, {"a": "1"}),
]


@pytest.mark.parametrize("case", DELTAS, ids=[case.id for case in DELTAS])
def test_delta_holds_every_desired_leaf_that_differs(case: Delta) -> None:
    assert delta(case.desired, case.reported) == case.expected


@pytest.mark.parametrize(
    ("desired", "reported"),
    [
        ({"on": True}, {"on": 1}),
        ({"on": 1}, {"on": True}),
        ({"off": False}, {"off": 0}),
        ({"l": [1, 0]}, {"l": [True, False]}),
        ({"o": {"x": True}}, {"o": {"x": 1.0}}),
    ],
    ids=["true-vs-1", "1-vs-true", "false-vs-0", "array-of-bools", "nested-true-vs-1.0"],
)
def test_delta_tells_json_booleans_from_numbers(desired: dict[str, Any], reported: dict[str, Any]) -> None:
    """true and 1 are different JSON values: a device reporting 1 has not done what `true` asked."""
    assert delta(desired, reported) == desired


@pytest.mark.parametrize(
    ("difference", "metadata", "expected"),
    [
        ({"a": 1}, {"a": STAMP0, "b": STAMP1}, {"a": STAMP0}),
        (
            {"light": {"level": 5}},
            {"light": {"color": STAMP0, "level": STAMP1}, "fan": STAMP0},
            {"light": {"level": STAMP1}},
        ),
        ({"l": [1, 2]}, {"l": STAMP1, "m": STAMP0}, {"l": STAMP1}),
        ({"a": {"b": 1}}, {"a": {"b": STAMP0, "c": STAMP1}}, {"a": {"b": STAMP0}}),
    ],
    ids=["leaf", "nested", "array", "object-missing-from-reported"],
)
def test_delta_metadata_is_the_desired_metadata_of_those_leaves(
    difference: dict[str, Any], metadata: dict[str, Any], expected: dict[str, Any]
) -> None:
    assert delta_metadata(difference, metadata) == expected


def test_delta_metadata_of_a_key_named_timestamp() -> None:
    """A desired object may have a key "timestamp"; its metadata is still per leaf."""
    shadow = shadow_with({"desired": {"a": {"timestamp": 5, "b": 1}}}, now=T0)
    shadow = update(shadow, {"state": {"reported": {"a": {"timestamp": 5, "b": 2}}}}, now=T1)
    assert shadow.state is not None
    difference = delta(shadow.state["desired"], shadow.state["reported"])
    assert difference == {"a": {"b": 1}}
    assert delta_metadata(difference, shadow.metadata["desired"]) == {"a": {"b": STAMP0}}


# --- validation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    id: str
    payload: bytes
    code: int
    message: str


TOKEN_64 = "t" * 64
BADS = [
    Bad("not-json", b"{state", 400, "Invalid JSON"),
    Bad("empty-payload", b"", 400, "Invalid JSON"),
    Bad("json-array", b"[1, 2]", 400, "Invalid JSON"),
    Bad("json-string", b'"state"', 400, "Invalid JSON"),
    Bad("json-number", b"42", 400, "Invalid JSON"),
    Bad("json-null", b"null", 400, "Invalid JSON"),
    Bad("trailing-garbage", b'{"state": {}} x', 400, "Invalid JSON"),
    Bad("nan-is-not-json", b'{"state": {"desired": {"x": NaN}}}', 400, "Invalid JSON"),
    Bad("infinity-is-not-json", b'{"state": {"reported": {"x": -Infinity}}}', 400, "Invalid JSON"),
    Bad("no-state", b'{"desired": {"a": 1}}', 400, "Missing required node: state"),
    Bad("empty-object", b"{}", 400, "Missing required node: state"),
    Bad("state-string", b'{"state": "on"}', 400, "State node must be an object"),
    Bad("state-number", b'{"state": 1}', 400, "State node must be an object"),
    Bad("state-array", b'{"state": [{"desired": {}}]}', 400, "State node must be an object"),
    Bad("state-bool", b'{"state": true}', 400, "State node must be an object"),
    Bad("desired-string", b'{"state": {"desired": "on"}}', 400, "Desired node must be an object"),
    Bad("desired-array", b'{"state": {"desired": [1]}}', 400, "Desired node must be an object"),
    Bad("desired-number", b'{"state": {"desired": 0}}', 400, "Desired node must be an object"),
    Bad("reported-string", b'{"state": {"reported": "x"}}', 400, "Reported node must be an object"),
    Bad("reported-bool", b'{"state": {"reported": false}}', 400, "Reported node must be an object"),
    Bad("version-string", b'{"state": {}, "version": "1"}', 400, "Invalid version"),
    Bad("version-negative", b'{"state": {}, "version": -1}', 400, "Invalid version"),
    Bad("version-float", b'{"state": {}, "version": 1.5}', 400, "Invalid version"),
    Bad("version-bool", b'{"state": {}, "version": true}', 400, "Invalid version"),
    Bad("version-null", b'{"state": {}, "version": null}', 400, "Invalid version"),
    Bad("client-token-65-bytes", encode({"state": {}, "clientToken": "t" * 65}), 400, "Invalid clientToken"),
    Bad(
        "client-token-66-utf8-bytes",
        encode({"state": {}, "clientToken": "é" * 33}),
        400,
        "Invalid clientToken",
    ),
    Bad("client-token-number", b'{"state": {}, "clientToken": 7}', 400, "Invalid clientToken"),
    Bad(
        "seven-levels",
        encode({"state": {"desired": nested(7)}}),
        400,
        "JSON contains too many levels of nesting; maximum is 6",
    ),
    Bad(
        "seven-levels-reported",
        encode({"state": {"reported": {"a": 1, "b": nested(7)}}}),
        400,
        "JSON contains too many levels of nesting; maximum is 6",
    ),
    Bad(
        "seven-levels-through-arrays",
        encode({"state": {"desired": {"k1": [[[[[[1]]]]]]}}}),
        400,
        "JSON contains too many levels of nesting; maximum is 6",
    ),
    Bad(
        "array-with-null", b'{"state": {"desired": {"l": [1, null]}}}', 400, "State contains an invalid node"
    ),
    Bad(
        "nested-array-with-null",
        b'{"state": {"reported": {"a": {"l": [{"x": [null]}]}}}}',
        400,
        "State contains an invalid node",
    ),
    Bad("latin-1", '{"state": {"desired": {"n": "é"}}}'.encode("latin-1"), 415, ""),
    Bad("utf-16", '{"state": {"desired": {"n": 1}}}'.encode("utf-16"), 415, ""),
    Bad("invalid-byte", b'{"state": {"desired": {"n": "\xff"}}}', 415, ""),
]
UNSUPPORTED_ENCODING = "Unsupported documented encoding; supported encoding is UTF-8"


@pytest.mark.parametrize("case", BADS, ids=[case.id for case in BADS])
def test_invalid_requests_are_rejected_with_the_contracts_code_and_message(case: Bad) -> None:
    message = case.message or UNSUPPORTED_ENCODING
    assert rejection(lambda: parse_update(case.payload, LIMITS)) == (case.code, message)


@pytest.mark.parametrize(
    "document",
    [
        {"state": {"desired": nested(6)}},
        {"state": {"desired": {"k1": [[[[[1]]]]]}}},
        {"state": {}, "clientToken": TOKEN_64},
        {"state": {}, "clientToken": "é" * 32},
        {"state": {}, "clientToken": ""},
        {"state": {}, "version": 0},
        {"state": None},
        {"state": {"desired": None, "reported": {}}},
    ],
    ids=[
        "six-levels",
        "six-levels-through-arrays",
        "token-64-bytes",
        "token-64-utf8-bytes",
        "token-empty",
        "version-0",
        "state-null",
        "section-null-and-empty",
    ],
)
def test_valid_requests_at_the_limits_are_accepted(document: dict[str, Any]) -> None:
    update(Shadow(), document)


def leaves(count: int) -> dict[str, int]:
    return {f"k{index:04}": 1 for index in range(count)}


def test_size_limit_counts_the_resulting_desired_and_reported() -> None:
    """8 KB for desired + reported of the resulting document: two halves that fit alone, not together."""
    shadow = shadow_with({"desired": {"s": "x" * 4500}})
    before = copy.deepcopy(shadow)
    assert rejection(lambda: update(shadow, {"state": {"reported": {"s": "y" * 4500}}})) == (
        413,
        "The payload exceeds the maximum size allowed",
    )
    assert shadow == before
    smaller = update(shadow, {"state": {"desired": {"s": None}, "reported": {"s": "y" * 4500}}})
    assert smaller.state == {"desired": {}, "reported": {"s": "y" * 4500}}


def test_size_limit_does_not_count_metadata() -> None:
    # 500 leaves: about 5 KB of state and about 12 KB of metadata.
    shadow = update(Shadow(), {"state": {"desired": leaves(500)}})
    assert len(json.dumps(shadow.metadata)) > 8192
    assert len(json.dumps(shadow.state)) < 8192


def test_a_single_request_over_the_size_limit_is_rejected() -> None:
    code, _ = rejection(lambda: update(Shadow(), {"state": {"desired": {"s": "x" * 8200}}}))
    assert code == 413


@pytest.mark.parametrize(
    ("limits", "document", "code", "message"),
    [
        (Limits(max_depth=3), {"state": {"desired": nested(4)}}, 400, "maximum is 3"),
        (
            Limits(max_client_token_bytes=8),
            {"state": {}, "clientToken": "123456789"},
            400,
            "Invalid clientToken",
        ),
        (Limits(max_document_bytes=100), {"state": {"reported": {"s": "x" * 100}}}, 413, "maximum size"),
    ],
    ids=["depth", "client-token", "document-size"],
)
def test_every_limit_is_configurable(
    limits: Limits, document: dict[str, Any], code: int, message: str
) -> None:
    got_code, got_message = rejection(lambda: update(Shadow(), document, limits=limits))
    assert got_code == code
    assert message in got_message
    update(Shadow(), document)  # within the default limits


# --- versioning -----------------------------------------------------------------------------------


def test_version_must_equal_the_current_one_when_given() -> None:
    shadow = shadow_with({"desired": {"a": 1}})  # version 1
    assert rejection(lambda: update(shadow, {"state": {"desired": {"a": 2}}, "version": 0})) == (
        409,
        "Version conflict",
    )
    assert rejection(lambda: update(shadow, {"state": {"desired": {"a": 2}}, "version": 2}))[0] == 409
    assert update(shadow, {"state": {"desired": {"a": 2}}, "version": 1}).version == 2
    assert update(shadow, {"state": {"desired": {"a": 2}}}).version == 2  # no version: no check


def test_a_deleted_shadow_keeps_its_version() -> None:
    deleted = Shadow(state=None, metadata={}, version=7)
    assert not deleted.exists
    assert rejection(lambda: update(deleted, {"state": {}, "version": 0}))[0] == 409
    recreated = update(deleted, {"state": {"reported": {"a": 1}}, "version": 7})
    assert (recreated.state, recreated.version) == ({"reported": {"a": 1}}, 8)
    assert recreated.metadata == {"reported": {"a": STAMP1}}
