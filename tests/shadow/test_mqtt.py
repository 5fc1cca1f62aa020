"""Shadows over MQTT: real paho clients through a whole gateway, against the contract.

Ordering note: the gateway answers one shadow's requests one after the
other, so when a later request's answer has arrived, every message of an
earlier one has arrived too. "No delta was published" is proved that way
(a ``get`` after the update), never by waiting.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mqttproxy.config import ShadowConfig
from mqttproxy.protocol.codec import encode_packet
from mqttproxy.protocol.packets import Publish
from mqttproxy.shadow import ShadowService
from mqttproxy.upstream.models import Route
from tests.helpers import RawClient, ThreadedGateway, make_config, paho_client, running_gateway
from tests.mosquitto import Mosquitto
from tests.registry.util import add_device, add_tenant
from tests.shadow import ShadowClient, epoch_now_range, failing_database, leaf_metadata, prefix
from tests.upstream.util import add, record, upstream_subscriber, wait_state

GatewayFactory = Callable[..., ThreadedGateway]
SUBACK_FAILURE = 0x80
UNSUPPORTED_ENCODING = "Unsupported documented encoding; supported encoding is UTF-8"


def shadows(gateway: ThreadedGateway) -> ShadowService:
    assert gateway.gateway is not None
    return gateway.gateway.shadows


@pytest.fixture
def app(gateway: ThreadedGateway) -> ShadowClient:
    return ShadowClient.connect(gateway.port, "app")


def stamp_of(response: Any) -> dict[str, int]:
    timestamp = response.body["timestamp"]
    assert type(timestamp) is int, response.body
    return {"timestamp": timestamp}


# --- update, delta, documents ------------------------------------------------------------------


def test_update_is_answered_with_accepted_delta_and_documents(app: ShadowClient) -> None:
    app.watch("lamp")
    started = time.time()

    # 1: desired only -> the delta is the whole desired state.
    desired = {"color": "red", "light": {"level": 3, "modes": ["eco", "night"]}}
    first = app.request("lamp", "update", {"state": {"desired": desired}, "clientToken": "tok-1"})
    assert first.kind == "update/accepted"
    stamp1 = stamp_of(first)
    assert stamp1["timestamp"] in epoch_now_range(started)
    metadata1 = {"desired": leaf_metadata(desired, stamp1)}
    assert first.body == {
        "state": {"desired": desired},
        "metadata": metadata1,
        "version": 1,
        "timestamp": stamp1["timestamp"],
        "clientToken": "tok-1",
    }
    delta = app.wait_for("update/delta", token="tok-1")
    assert delta.body == {
        "state": desired,
        "metadata": metadata1["desired"],
        "version": 1,
        "timestamp": stamp_of(delta)["timestamp"],
        "clientToken": "tok-1",
    }
    documents = app.wait_for("update/documents", token="tok-1")
    assert documents.body == {
        "previous": {"state": {}, "metadata": {}, "version": 0},
        "current": {"state": {"desired": desired}, "metadata": metadata1, "version": 1},
        "timestamp": stamp_of(documents)["timestamp"],
        "clientToken": "tok-1",
    }

    # 2: reported only; the delta still holds every desired leaf that differs.
    second = app.request(
        "lamp", "update", {"state": {"reported": {"color": "red", "rssi": -60}}, "clientToken": "tok-2"}
    )
    stamp2 = stamp_of(second)
    assert second.body == {
        "state": {"reported": {"color": "red", "rssi": -60}},
        "metadata": {"reported": {"color": stamp2, "rssi": stamp2}},
        "version": 2,
        "timestamp": stamp2["timestamp"],
        "clientToken": "tok-2",
    }
    delta = app.wait_for("update/delta", token="tok-2")
    assert delta.body["state"] == {"light": {"level": 3, "modes": ["eco", "night"]}}  # not color, not rssi
    assert delta.body["metadata"] == {"light": metadata1["desired"]["light"]}
    assert delta.body["version"] == 2
    documents = app.wait_for("update/documents", token="tok-2")
    current2 = {
        "state": {"desired": desired, "reported": {"color": "red", "rssi": -60}},
        "metadata": {**metadata1, "reported": {"color": stamp2, "rssi": stamp2}},
        "version": 2,
    }
    assert documents.body["previous"] == {"state": {"desired": desired}, "metadata": metadata1, "version": 1}
    assert documents.body["current"] == current2

    # 3: reported catches up (with a reported-only key left over): no delta.
    third = app.request(
        "lamp", "update", {"state": {"reported": {"light": desired["light"]}}, "clientToken": "tok-3"}
    )
    assert third.body["version"] == 3
    documents = app.wait_for("update/documents", token="tok-3")
    assert documents.body["previous"] == current2
    assert documents.body["current"]["version"] == 3
    got = app.get("lamp")
    assert got.kind == "get/accepted"
    assert "delta" not in got.body["state"]
    assert "update/delta" not in app.kinds_seen("lamp")


def test_a_change_of_desired_in_a_nested_object_gives_a_delta_with_only_that_path(app: ShadowClient) -> None:
    app.watch("hvac")
    state = {"mode": "heat", "zones": {"kitchen": {"target": 20, "fan": "auto"}, "hall": {"target": 18}}}
    app.request("hvac", "update", {"state": {"desired": state, "reported": state}})
    app.get("hvac")
    assert "update/delta" not in app.kinds_seen("hvac")
    accepted = app.request(
        "hvac", "update", {"state": {"desired": {"zones": {"kitchen": {"target": 22}}}}, "clientToken": "k"}
    )
    delta = app.wait_for("update/delta", token="k")
    assert delta.body["state"] == {"zones": {"kitchen": {"target": 22}}}
    assert delta.body["metadata"] == {"zones": {"kitchen": {"target": stamp_of(accepted)}}}


def test_get_accepted_has_state_delta_metadata_version_and_timestamp(app: ShadowClient) -> None:
    app.watch("meter")
    desired = {"a": 1, "b": {"c": 2, "d": [1, 2]}}
    reported = {"a": 0, "b": {"c": 2, "d": [1]}, "x": 5}
    stamp1 = stamp_of(app.request("meter", "update", {"state": {"desired": desired}}))
    stamp2 = stamp_of(app.request("meter", "update", {"state": {"reported": reported}}))
    started = time.time()
    got = app.get("meter")
    assert got.kind == "get/accepted"
    assert got.body == {
        "state": {"desired": desired, "reported": reported, "delta": {"a": 1, "b": {"d": [1, 2]}}},
        "metadata": {"desired": leaf_metadata(desired, stamp1), "reported": leaf_metadata(reported, stamp2)},
        "version": 2,
        "timestamp": stamp_of(got)["timestamp"],
    }
    assert got.body["timestamp"] in epoch_now_range(started)

    app.request("meter", "update", {"state": {"reported": {"a": 1, "b": {"d": [1, 2]}}}})
    got = app.get("meter")
    assert set(got.body["state"]) == {"desired", "reported"}  # no delta once they agree
    assert got.body["version"] == 3


def test_an_empty_state_is_a_valid_shadow(app: ShadowClient) -> None:
    app.watch("blank")
    accepted = app.request("blank", "update", {"state": {}})
    assert (accepted.kind, accepted.body["version"]) == ("update/accepted", 1)
    got = app.get("blank")
    assert got.kind == "get/accepted"
    assert (got.body["state"], got.body["version"]) == ({}, 1)


def test_state_null_does_not_delete_the_shadow(app: ShadowClient) -> None:
    app.watch("keep")
    app.request("keep", "update", {"state": {"desired": {"a": 1}, "reported": {"a": 1}}})
    accepted = app.request("keep", "update", {"state": None, "clientToken": "n"})
    assert (accepted.kind, accepted.body["version"]) == ("update/accepted", 2)
    got = app.get("keep")
    assert got.kind == "get/accepted"
    assert got.body["state"] == {"desired": {"a": 1}, "reported": {"a": 1}}


def test_section_null_clears_it_and_leaf_null_deletes(app: ShadowClient) -> None:
    app.watch("valve")
    app.request(
        "valve", "update", {"state": {"desired": {"open": True, "pct": 40}, "reported": {"open": False}}}
    )
    app.request("valve", "update", {"state": {"desired": {"pct": None}}})
    assert app.get("valve").body["state"]["desired"] == {"open": True}
    accepted = app.request("valve", "update", {"state": {"desired": None}, "clientToken": "clear"})
    assert accepted.body["state"] == {"desired": None}
    got = app.get("valve")
    assert got.body["state"] == {"reported": {"open": False}}
    assert set(got.body["metadata"]) == {"reported"}


# --- delete ---------------------------------------------------------------------------------------


def test_delete_keeps_the_version_and_a_new_shadow_continues_from_it(app: ShadowClient) -> None:
    app.watch("door")
    app.request("door", "update", {"state": {"desired": {"locked": True}}})
    app.request("door", "update", {"state": {"reported": {"locked": False}}})
    started = time.time()
    deleted = app.request("door", "delete")
    assert deleted.kind == "delete/accepted"
    assert deleted.body == {"version": 2, "timestamp": stamp_of(deleted)["timestamp"]}
    assert deleted.body["timestamp"] in epoch_now_range(started)

    missing = app.get("door")
    assert missing.kind == "get/rejected"
    assert (missing.body["code"], missing.body["message"]) == (404, "Thing not found")
    again = app.request("door", "delete")
    assert (again.kind, again.body["code"], again.body["message"]) == (
        "delete/rejected",
        404,
        "Thing not found",
    )

    recreated = app.request("door", "update", {"state": {"reported": {"battery": 80}}, "clientToken": "re"})
    assert (recreated.kind, recreated.body["version"]) == ("update/accepted", 3)
    documents = app.wait_for("update/documents", token="re")
    assert documents.body["previous"]["version"] == 2
    assert documents.body["previous"]["state"] == {}
    got = app.get("door")
    assert got.body["state"] == {"reported": {"battery": 80}}  # nothing of the deleted shadow
    assert got.body["version"] == 3


def test_delete_ignores_its_payload(app: ShadowClient) -> None:
    """Contract: devices publish to {prefix}/delete "(payload ignored)"."""
    app.watch("junk")
    app.request("junk", "update", {"state": {"reported": {"a": 1}}})
    deleted = app.request("junk", "delete", b"not json at all")
    assert deleted.kind == "delete/accepted", deleted.body


def test_version_conflict_and_versioned_updates(app: ShadowClient) -> None:
    app.watch("ver")
    assert app.request("ver", "update", {"state": {"desired": {"a": 1}}, "version": 0}).body["version"] == 1
    assert app.request("ver", "update", {"state": {"desired": {"a": 2}}, "version": 1}).body["version"] == 2
    stale = app.request("ver", "update", {"state": {"desired": {"a": 3}}, "version": 1, "clientToken": "old"})
    assert stale.kind == "update/rejected"
    assert stale.body == {
        "code": 409,
        "message": "Version conflict",
        "timestamp": stamp_of(stale)["timestamp"],
        "clientToken": "old",
    }
    got = app.get("ver")
    assert (got.body["state"]["desired"], got.body["version"]) == ({"a": 2}, 2)


# --- errors ---------------------------------------------------------------------------------------

PAD = "p" * 4000


@pytest.mark.parametrize(
    ("payload", "code", "message", "token"),
    [
        (b"{not json", 400, "Invalid JSON", None),
        (b"", 400, "Invalid JSON", None),
        (b'["state"]', 400, "Invalid JSON", None),
        (b'{"clientToken": "e1", "desired": {}}', 400, "Missing required node: state", "e1"),
        (b'{"clientToken": "e2", "state": [1]}', 400, "State node must be an object", "e2"),
        (b'{"clientToken": "e3", "state": {"desired": "x"}}', 400, "Desired node must be an object", "e3"),
        (b'{"clientToken": "e4", "state": {"reported": [1]}}', 400, "Reported node must be an object", "e4"),
        (b'{"clientToken": "e5", "state": {}, "version": "2"}', 400, "Invalid version", "e5"),
        (b'{"clientToken": "' + b"t" * 65 + b'", "state": {}}', 400, "Invalid clientToken", None),
        (
            b'{"clientToken": "e6", "state": {"desired": {"a":{"b":{"c":{"d":{"e":{"f":{"g":1}}}}}}}}}',
            400,
            "JSON contains too many levels of nesting; maximum is 6",
            "e6",
        ),
        (
            b'{"clientToken": "e7", "state": {"desired": {"l": [1, null]}}}',
            400,
            "State contains an invalid node",
            "e7",
        ),
        (
            b'{"clientToken": "e8", "state": {"desired": {"a": 9}}, "version": 7}',
            409,
            "Version conflict",
            "e8",
        ),
        (
            b'{"clientToken": "e9", "state": {"reported": {"pad": "' + b"q" * 4500 + b'"}}}',
            413,
            "The payload exceeds the maximum size allowed",
            "e9",
        ),
        (b'{"state": {"desired": {"a": "\xe9t\xe9"}}}', 415, UNSUPPORTED_ENCODING, None),
    ],
    ids=[
        "not-json",
        "empty",
        "not-an-object",
        "missing-state",
        "state-not-object",
        "desired-not-object",
        "reported-not-object",
        "invalid-version",
        "client-token-too-long",
        "nesting",
        "array-with-null",
        "version-conflict",
        "resulting-document-too-large",
        "not-utf8",
    ],
)
def test_a_rejected_update_stores_nothing(
    app: ShadowClient, payload: bytes, code: int, message: str, token: str | None
) -> None:
    app.watch("err")
    stored = {"desired": {"a": 1, "pad": PAD}}
    app.request("err", "update", {"state": stored})
    before = app.get("err").body
    app.drain()
    app.publish("err", "update", payload)
    rejected = app.wait_for("update/rejected")
    expected: dict[str, Any] = {
        "code": code,
        "message": message,
        "timestamp": stamp_of(rejected)["timestamp"],
    }
    if token is not None:
        expected["clientToken"] = token
    assert rejected.body == expected
    after = app.get("err")
    assert after.body["state"] == before["state"]
    assert (after.body["version"], after.body["metadata"]) == (1, before["metadata"])
    assert app.kinds_seen("err") == []  # no accepted, delta or documents


@pytest.mark.parametrize(
    ("thing", "name", "token"),
    [
        ("Thing", "", None),
        ("thing", "", "t-404"),
        ("thing", "config", None),
        ("thing", "config", "n-404"),
    ],
    ids=["classic", "classic-token", "named", "named-token"],
)
def test_get_of_a_missing_shadow_is_404(app: ShadowClient, thing: str, name: str, token: str | None) -> None:
    app.watch(thing, name)
    app.publish(thing, "get", {"clientToken": token} if token else None, name)
    rejected = app.wait_for("get/rejected", thing=thing, name=name)
    expected = {
        "code": 404,
        "message": f"No shadow exists with name: {name}" if name else "Thing not found",
        "timestamp": stamp_of(rejected)["timestamp"],
    }
    assert rejected.body == ({**expected, "clientToken": token} if token else expected)


@pytest.mark.parametrize(
    ("thing", "name"),
    [
        ("bad.name", ""),
        ("bad name", ""),
        ("x" * 129, ""),
        ("thing", "$reserved"),
        ("thing", "bad.name"),
        ("thing", "n" * 65),
    ],
    ids=["thing-dot", "thing-space", "thing-129", "shadow-dollar", "shadow-dot", "shadow-65"],
)
def test_bad_thing_and_shadow_names_are_rejected(
    gateway: ThreadedGateway, app: ShadowClient, thing: str, name: str
) -> None:
    app.watch(thing, name)
    app.publish(thing, "update", {"state": {"reported": {"a": 1}}, "clientToken": "bad-name"}, name)
    rejected = app.wait_for("update/rejected", thing=thing, name=name)
    assert rejected.body["code"] == 400
    assert isinstance(rejected.body["message"], str)
    assert rejected.body["message"]
    assert rejected.body["clientToken"] == "bad-name"
    service = shadows(gateway)
    assert gateway.run(service.things()) == []
    assert app.kinds_seen(thing, name) == []


@pytest.mark.parametrize(
    ("thing", "name"),
    [("T" * 128, ""), ("a:b_c-D9", ""), ("thing", "n" * 64), ("thing", "a$b:c_d-9")],
    ids=["thing-128", "thing-all-chars", "shadow-64", "shadow-all-chars"],
)
def test_names_at_the_limits_are_accepted(app: ShadowClient, thing: str, name: str) -> None:
    app.watch(thing, name)
    accepted = app.request(thing, "update", {"state": {"reported": {"a": 1}}}, name)
    assert accepted.kind == "update/accepted"
    assert app.get(thing, name).body["state"] == {"reported": {"a": 1}}


def test_the_limits_come_from_the_config(gateway_factory: GatewayFactory, tmp_path: Path) -> None:
    limits = ShadowConfig(max_document_bytes=256, max_depth=2, max_client_token_bytes=4)
    gateway = gateway_factory(make_config(tmp_path).model_copy(update={"shadow": limits}))
    app = ShadowClient.connect(gateway.port, "app")
    app.watch("small")
    for body, code, message in [
        (
            {"state": {"desired": {"a": {"b": {"c": 1}}}}},
            400,
            "JSON contains too many levels of nesting; maximum is 2",
        ),
        ({"state": {}, "clientToken": "12345"}, 400, "Invalid clientToken"),
        ({"state": {"reported": {"s": "x" * 300}}}, 413, "The payload exceeds the maximum size allowed"),
    ]:
        app.publish("small", "update", body)
        rejected = app.wait_for("update/accepted", "update/rejected")
        assert (rejected.kind, rejected.body["code"], rejected.body["message"]) == (
            "update/rejected",
            code,
            message,
        )
    accepted = app.request("small", "update", {"state": {"desired": {"a": {"b": 1}}}, "clientToken": "1234"})
    assert accepted.kind == "update/accepted"


def test_a_failed_write_is_a_500_and_nothing_is_accepted(gateway: ThreadedGateway, app: ShadowClient) -> None:
    """An accepted update is stored before /update/accepted: when storing fails, none is sent."""
    app.watch("fragile")
    app.request("fragile", "update", {"state": {"desired": {"a": 1}}})
    before = app.get("fragile").body
    app.drain()
    with failing_database(gateway, "execute"):
        app.publish("fragile", "update", {"state": {"desired": {"a": 2}}, "clientToken": "io-1"})
        app.publish("fragile", "delete", {"clientToken": "io-2"})
        update = app.wait_for("update/rejected", token="io-1")
        delete = app.wait_for("delete/rejected", token="io-2")
    for response, token in ((update, "io-1"), (delete, "io-2")):
        assert response.body == {
            "code": 500,
            "message": "Internal service failure",
            "timestamp": stamp_of(response)["timestamp"],
            "clientToken": token,
        }
    after = app.get("fragile").body
    assert {k: after[k] for k in ("state", "metadata", "version")} == {
        k: before[k] for k in ("state", "metadata", "version")
    }
    assert app.kinds_seen("fragile") == []  # no accepted, delta or documents went out
    assert app.request("fragile", "update", {"state": {"desired": {"a": 2}}}).body["version"] == 2


def test_a_failed_read_is_a_500(gateway: ThreadedGateway, app: ShadowClient) -> None:
    app.watch("fragile")
    app.request("fragile", "update", {"state": {"reported": {"a": 1}}})
    with failing_database(gateway, "fetch_one"):
        app.publish("fragile", "get", {"clientToken": "io-3"})
        rejected = app.wait_for("get/rejected", token="io-3")
    assert (rejected.body["code"], rejected.body["message"]) == (500, "Internal service failure")
    assert app.get("fragile").body["state"] == {"reported": {"a": 1}}


# --- requests in flight ---------------------------------------------------------------------------


def burst(port: int, client_id: str, thing: str, tokens: list[str]) -> RawClient:
    """One connection that writes every update in a single send: all are in flight at once."""
    raw = RawClient(port)
    assert raw.connect(client_id).return_code == 0
    topic = f"{prefix(thing)}/update"
    packets = [
        encode_packet(
            Publish(
                topic=topic, payload=json.dumps({"state": {"reported": {"n": t}}, "clientToken": t}).encode()
            )
        )
        for t in tokens
    ]
    raw.send(b"".join(packets))
    return raw


def collect(client: ShadowClient, thing: str, count: int) -> tuple[list[Any], list[Any]]:
    """``count`` update answers for ``thing``: (accepted, rejected)."""
    answers = [client.wait_for("update/accepted", "update/rejected", thing=thing) for _ in range(count)]
    return (
        [a for a in answers if a.kind == "update/accepted"],
        [a for a in answers if a.kind == "update/rejected"],
    )


def test_more_than_ten_requests_in_flight_on_one_connection_get_429(
    gateway: ThreadedGateway, app: ShadowClient
) -> None:
    app.watch("busy")
    tokens = [f"b{index}" for index in range(40)]
    with burst(gateway.port, "burster", "busy", tokens):
        accepted, rejected = collect(app, "busy", len(tokens))
    assert rejected, "40 updates at once on one connection: some must be refused"
    assert len(accepted) >= 10
    for response in rejected:
        assert response.body["code"] == 429
        assert isinstance(response.body["message"], str)
        assert response.token in tokens  # echoed
    assert sorted(a.body["version"] for a in accepted) == list(range(1, len(accepted) + 1))
    assert app.get("busy").body["version"] == len(accepted)  # a 429 stores nothing


def test_ten_requests_in_flight_per_connection_are_all_served(
    gateway: ThreadedGateway, app: ShadowClient
) -> None:
    app.watch("ten")
    first = [f"x{index}" for index in range(10)]
    second = [f"y{index}" for index in range(10)]
    with burst(gateway.port, "burster-x", "ten", first), burst(gateway.port, "burster-y", "ten", second):
        accepted, rejected = collect(app, "ten", 20)
    assert rejected == []
    assert sorted(a.body["version"] for a in accepted) == list(range(1, 21))


# --- named shadows --------------------------------------------------------------------------------


def test_named_shadows_have_their_own_topics_and_versions(
    gateway: ThreadedGateway, app: ShadowClient
) -> None:
    classic_only = ShadowClient.connect(gateway.port, "classic-only")
    classic_only.watch("multi")
    for name in ("", "cfg", "fw", "nope"):
        app.watch("multi", name)

    assert app.request("multi", "update", {"state": {"reported": {"on": True}}}).body["version"] == 1
    assert app.request("multi", "update", {"state": {"desired": {"rate": 5}}}, "cfg").body["version"] == 1
    cfg = app.request("multi", "update", {"state": {"desired": {"rate": 6}}, "clientToken": "c2"}, "cfg")
    assert (cfg.name, cfg.body["version"]) == ("cfg", 2)
    assert app.wait_for("update/delta", name="cfg", token="c2").body["state"] == {"rate": 6}
    assert app.request("multi", "update", {"state": {"reported": {"fw": "1.2"}}}, "fw").body["version"] == 1
    assert app.request("multi", "update", {"state": {"reported": {"on": False}}}).body["version"] == 2

    assert app.get("multi").body["state"] == {"reported": {"on": False}}
    assert app.get("multi", "cfg").body["state"] == {"desired": {"rate": 6}, "delta": {"rate": 6}}
    assert app.get("multi", "fw").body["version"] == 1
    missing = app.get("multi", "nope")
    assert (missing.kind, missing.body["message"]) == ("get/rejected", "No shadow exists with name: nope")

    deleted = app.request("multi", "delete", None, "cfg")
    assert (deleted.kind, deleted.name, deleted.body["version"]) == ("delete/accepted", "cfg", 2)
    assert app.get("multi", "cfg").kind == "get/rejected"
    assert app.get("multi").body["version"] == 2
    assert app.get("multi", "fw").kind == "get/accepted"

    # The classic shadow's subscriber heard only the classic shadow's answers.
    assert classic_only.get("multi").kind == "get/accepted"
    heard = classic_only.drain()
    assert {r.name for r in heard} == {""}
    assert {"update/accepted", "update/documents"} <= {r.kind for r in heard}


# --- persistence and sessions -------------------------------------------------------------------


def test_shadows_survive_a_restart(tmp_path: Path) -> None:
    config = make_config(tmp_path)
    with running_gateway(config) as gateway:
        app = ShadowClient.connect(gateway.port, "app")
        for thing, name in (("pump", ""), ("pump", "cal"), ("gone", "")):
            app.watch(thing, name)
        app.request("pump", "update", {"state": {"desired": {"rpm": 900}, "reported": {"rpm": 850}}})
        app.request("pump", "update", {"state": {"reported": {"temp": {"c": 41}}}})
        app.request("pump", "update", {"state": {"desired": {"k": [1, 2]}}}, "cal")
        app.request("gone", "update", {"state": {"reported": {"x": 1}}})
        app.request("gone", "update", {"state": {"reported": {"x": 2}}})
        assert app.request("gone", "delete").kind == "delete/accepted"
        before = {name: app.get("pump", name).body for name in ("", "cal")}
        app.disconnect()

    with running_gateway(config) as gateway:
        app = ShadowClient.connect(gateway.port, "app")
        for thing, name in (("pump", ""), ("pump", "cal"), ("gone", "")):
            app.watch(thing, name)
        for name in ("", "cal"):
            after = app.get("pump", name).body
            assert {k: after[k] for k in ("state", "metadata", "version")} == {
                k: before[name][k] for k in ("state", "metadata", "version")
            }
        assert app.get("pump").body["state"]["delta"] == {"rpm": 900}
        assert app.get("gone").kind == "get/rejected"
        assert app.request("pump", "update", {"state": {"reported": {"rpm": 900}}}).body["version"] == 3
        assert app.request("gone", "update", {"state": {"reported": {"x": 3}}}).body["version"] == 3
        app.disconnect()


def test_an_offline_device_gets_the_delta_from_its_persistent_session(
    gateway: ThreadedGateway, app: ShadowClient
) -> None:
    device = paho_client(gateway.port, "dev-offline", clean_session=False)
    assert device.subscribe(f"{prefix('dev-offline')}/update/delta", 1) == [1]
    device.disconnect()

    app.watch("dev-offline")
    app.request("dev-offline", "update", {"state": {"desired": {"fan": "high"}}, "clientToken": "away"})

    device = paho_client(gateway.port, "dev-offline", clean_session=False)
    assert device.session_present
    message = device.get()
    assert message.topic == f"{prefix('dev-offline')}/update/delta"
    assert message.qos == 1
    queued = json.loads(message.payload)
    assert (queued["state"], queued["version"], queued["clientToken"]) == ({"fan": "high"}, 1, "away")

    # And always through get, with or without a session.
    late = ShadowClient(device)
    late.watch("dev-offline")
    got = late.get("dev-offline")
    assert got.body["state"] == {"desired": {"fan": "high"}, "delta": {"fan": "high"}}
    device.disconnect()


# --- concurrency --------------------------------------------------------------------------------


@dataclass
class Writer:
    """One client updating one shadow with at most ``window`` requests unanswered."""

    who: str
    accepted: list[int] = field(default_factory=list)  # versions
    rejected: list[dict[str, Any]] = field(default_factory=list)
    error: BaseException | None = None

    def run(self, port: int, thing: str, count: int, window: int) -> None:
        try:
            client = ShadowClient.connect(port, f"writer-{self.who}")
            for kind in ("accepted", "rejected"):
                assert client.mqtt.subscribe(f"{prefix(thing)}/update/{kind}", 1) == [1]
            pending: set[str] = set()
            for index in range(count):
                if len(pending) == window:
                    self._answer(client, thing, pending)
                token = f"{self.who}-{index}"
                pending.add(token)
                client.publish(
                    thing, "update", {"state": {"reported": {self.who: index}}, "clientToken": token}
                )
            while pending:
                self._answer(client, thing, pending)
            client.disconnect()
        except BaseException as exc:  # reported in the test's thread
            self.error = exc

    def _answer(self, client: ShadowClient, thing: str, pending: set[str]) -> None:
        """Wait for the answer to one of our own requests (the other writer's are skipped)."""
        while True:
            answer = client.wait_for("update/accepted", "update/rejected", thing=thing, timeout=10)
            if answer.token in pending:
                pending.discard(answer.token)
                if answer.kind == "update/accepted":
                    self.accepted.append(answer.body["version"])
                else:
                    self.rejected.append(answer.body)
                return


def test_concurrent_updates_of_one_shadow_lose_nothing(gateway: ThreadedGateway) -> None:
    per_writer = 100
    writers = [Writer("a"), Writer("b")]
    # 10 in flight per connection: the most the contract allows without a 429.
    threads = [
        threading.Thread(target=writer.run, args=(gateway.port, "counter", per_writer, 10))
        for writer in writers
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [writer.error for writer in writers] == [None, None]
    assert [writer.rejected for writer in writers] == [[], []]
    versions = writers[0].accepted + writers[1].accepted
    assert len(versions) == 2 * per_writer
    assert sorted(versions) == list(range(1, 2 * per_writer + 1))  # each version once: none lost
    checker = ShadowClient.connect(gateway.port, "checker")
    checker.watch("counter")
    final = checker.get("counter").body
    assert final["version"] == 2 * per_writer
    assert final["state"]["reported"] == {"a": per_writer - 1, "b": per_writer - 1}


def test_a_slow_shadow_does_not_hold_up_another(gateway: ThreadedGateway, app: ShadowClient) -> None:
    """Requests for one shadow are served in turn; another shadow's proceed meanwhile."""
    assert gateway.gateway is not None
    database = gateway.gateway.database
    original = database.fetch_one
    gate = asyncio.Event()

    async def gated_fetch_one(sql: str, params: Any = ()) -> Any:
        if tuple(params)[:1] == ("slow",):
            await gate.wait()
        return await original(sql, params)

    app.watch("slow")
    app.watch("fast")
    gateway.call(lambda: setattr(database, "fetch_one", gated_fetch_one))
    try:
        app.publish("slow", "update", {"state": {"reported": {"n": 1}}, "clientToken": "s1"})
        app.publish("slow", "update", {"state": {"reported": {"n": 2}}, "clientToken": "s2"})
        fast = app.request("fast", "update", {"state": {"reported": {"n": 1}}, "clientToken": "f1"})
        assert (fast.kind, fast.body["version"]) == ("update/accepted", 1)
        assert app.get("fast").body["version"] == 1
        assert app.kinds_seen("slow") == []  # still waiting
        gateway.call(gate.set)
        assert app.wait_for("update/accepted", token="s1").body["version"] == 1
        assert app.wait_for("update/accepted", token="s2").body["version"] == 2
    finally:
        gateway.call(gate.set)
        gateway.call(lambda: delattr(database, "fetch_one"))


# --- device ACLs ----------------------------------------------------------------------------------


def test_a_device_reaches_only_its_own_things_shadow(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(allow_anonymous=False)
    add_tenant(gateway)
    _, token_a = add_device(gateway, "dev-a")
    _, token_b = add_device(gateway, "dev-b")
    device_a = ShadowClient.connect(gateway.port, "dev-a", username="dev-a", password=token_a)
    device_b = ShadowClient.connect(gateway.port, "dev-b", username="dev-b", password=token_b)
    device_a.watch("dev-a")  # every response topic of its own shadow: granted
    device_a.watch("dev-a", "config")
    device_b.watch("dev-b")

    assert device_a.mqtt.subscribe(f"{prefix('dev-b')}/update/accepted", 1) == [SUBACK_FAILURE]
    assert device_a.mqtt.subscribe(f"{prefix('dev-b')}/update/delta", 1) == [SUBACK_FAILURE]
    assert device_a.mqtt.subscribe("$aws/things/+/shadow/update/delta", 1) == [SUBACK_FAILURE]

    requests_before = shadows(gateway).requests
    device_a.publish("dev-b", "update", {"state": {"desired": {"hijacked": True}}, "clientToken": "evil"})
    device_a.publish("dev-b", "delete")
    device_a.publish("dev-b", "update", {"state": {}}, "config")

    own = device_a.request("dev-a", "update", {"state": {"reported": {"ok": True}}})
    assert own.kind == "update/accepted"
    assert (
        device_a.request("dev-a", "update", {"state": {"reported": {"v": 1}}}, "config").kind
        == "update/accepted"
    )
    missing = device_b.get("dev-b")  # nothing was stored for dev-b
    assert (missing.kind, missing.body["code"]) == ("get/rejected", 404)
    assert device_b.drain() == []
    assert {r.thing for r in device_a.drain()} == {"dev-a"}
    assert shadows(gateway).requests == requests_before + 3  # dev-a's two updates and dev-b's get
    assert gateway.run(shadows(gateway).things()) == ["dev-a"]


# --- upstreams ------------------------------------------------------------------------------------


def test_responses_go_upstream_only_where_a_route_says_so(gateway: ThreadedGateway, tmp_path: Path) -> None:
    """ "$aws/..." topics match no filter starting with a wildcard: the default "#" route skips them."""
    plain = Mosquitto(tmp_path / "plain").start()
    aws = Mosquitto(tmp_path / "aws").start()
    try:
        plain_seen = upstream_subscriber(plain)
        assert plain_seen.subscribe("$aws/#", 1) == [1]
        aws_seen = upstream_subscriber(aws, "$aws/#")
        add(gateway, record("plain", plain), record("aws", aws, routes=[Route(filter="$aws/things/#")]))
        wait_state(gateway, "plain")
        wait_state(gateway, "aws")

        app = ShadowClient.connect(gateway.port, "app")
        app.watch("relay")
        app.request("relay", "update", {"state": {"desired": {"on": True}}, "clientToken": "up"})
        app.wait_for("update/documents", token="up")
        app.mqtt.publish("devices/relay/marker", b"after", qos=1)

        assert plain_seen.get().topic == "devices/relay/marker"  # nothing of the shadow before it
        topics = {aws_seen.get().topic for _ in range(4)}
        kinds = ("update", "update/accepted", "update/delta", "update/documents")
        assert topics == {f"{prefix('relay')}/{kind}" for kind in kinds}  # the request and its answers
        for client in (app.mqtt, plain_seen, aws_seen):
            client.disconnect()
    finally:
        plain.stop()
        aws.stop()


# --- the AWS IoT device loop -------------------------------------------------------------------


def test_device_loop_with_an_mqtt_application(gateway: ThreadedGateway) -> None:
    thing = "thermostat-7"
    device = paho_client(gateway.port, thing)
    device_shadow = ShadowClient(device)
    for topic in ("update/delta", "get/accepted", "get/rejected", "update/accepted", "update/rejected"):
        assert device.subscribe(f"{prefix(thing)}/{topic}", 1) == [1]
    application = ShadowClient.connect(gateway.port, "application")
    application.watch(thing)

    # The device starts up and reports what it is doing.
    device_shadow.request(thing, "update", {"state": {"reported": {"target": 19, "mode": "eco"}}})
    # The application asks for a change.
    application.request(
        thing, "update", {"state": {"desired": {"target": 22, "mode": "eco"}}, "clientToken": "app-1"}
    )
    delta = device_shadow.wait_for("update/delta", token="app-1")
    assert delta.body["state"] == {"target": 22}
    # The device applies it and reports the new state.
    applied = device_shadow.request(
        thing, "update", {"state": {"reported": delta.body["state"]}, "clientToken": "dev-2"}
    )
    assert applied.kind == "update/accepted"
    # The delta stops.
    seen = application.get(thing)
    assert "delta" not in seen.body["state"]
    assert seen.body["state"]["reported"] == {"target": 22, "mode": "eco"}
    device_shadow.get(thing)
    assert "update/delta" not in [r.kind for r in device_shadow.drain()]

    # The device restarts and reads its shadow.
    device.disconnect()
    device = paho_client(gateway.port, thing)
    device_shadow = ShadowClient(device)
    device_shadow.watch(thing)
    got = device_shadow.get(thing)
    assert got.body["state"] == {
        "desired": {"target": 22, "mode": "eco"},
        "reported": {"target": 22, "mode": "eco"},
    }
    assert got.body["version"] == 3
