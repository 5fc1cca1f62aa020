"""Devices reach only their own topics, unless tenant or device rules say otherwise."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mqttproxy.protocol.packets import Pingreq, Pingresp, Puback, Publish, Suback, Subscribe
from mqttproxy.registry.acl import AclRule, TopicAcl, covers, overlaps
from mqttproxy.registry.models import AclRuleModel, DeviceSettings, TenantSettings
from tests.helpers import RawClient, ThreadedGateway, paho_client
from tests.registry.util import add_device, add_tenant, registry

GatewayFactory = Callable[..., ThreadedGateway]


@pytest.fixture
def fleet(gateway_factory: GatewayFactory) -> ThreadedGateway:
    gateway = gateway_factory(allow_anonymous=True)  # the observer connects anonymously
    add_tenant(
        gateway,
        acl=[
            AclRuleModel(action="publish", topic="devices/{device_id}/secret/#", allow=False),  # narrower
            AclRuleModel(action="publish", topic="fleet/{tenant_id}/status", allow=True),  # wider
        ],
    )
    return gateway


def _device(gateway: ThreadedGateway, device_id: str, **fields: object) -> RawClient:
    _, token = add_device(gateway, device_id, **fields)  # type: ignore[arg-type]
    client = RawClient(gateway.port)
    assert client.connect(device_id, username=device_id, password=token.encode()).return_code == 0
    return client


@pytest.mark.parametrize(
    ("topic", "delivered"),
    [
        ("devices/d1/telemetry", True),
        ("$aws/things/d1/shadow/update", True),
        ("fleet/acme/status", True),  # widened by the tenant
        ("devices/d1/secret/key", False),  # narrowed by the tenant
        ("devices/d2/telemetry", False),  # another device's topic
        ("fleet/other/status", False),
        ("anything/else", False),
    ],
)
def test_publish_is_allowed_only_where_the_rules_say(
    fleet: ThreadedGateway, topic: str, delivered: bool
) -> None:
    observer = paho_client(fleet.port, "observer")
    observer.subscribe("#", 1)
    observer.subscribe("$aws/#", 1)
    with _device(fleet, "d1") as device:
        device.send(Publish(topic=topic, payload=b"x", qos=1, packet_id=1))
        assert device.recv() == Puback(packet_id=1)  # acknowledged either way (3.1.1)
    if delivered:
        assert observer.get().topic == topic
    else:
        observer.assert_no_message()
        assert fleet.call(lambda: fleet.broker.stats.dropped_acl) == 1
    observer.disconnect()


@pytest.mark.parametrize(
    ("topic_filter", "granted"),
    [
        ("devices/d1/#", 1),
        ("devices/d1/cmd/+", 1),
        ("$aws/things/d1/shadow/update/delta", 1),
        ("devices/+/cmd", 0x80),  # would include other devices' topics
        ("#", 0x80),
        ("devices/d2/cmd", 0x80),
    ],
)
def test_subscribe_is_refused_outside_the_rules(
    fleet: ThreadedGateway, topic_filter: str, granted: int
) -> None:
    with _device(fleet, "d1") as device:
        device.send(Subscribe(packet_id=5, subscriptions=((topic_filter, 1),)))
        assert device.recv() == Suback(packet_id=5, return_codes=(granted,))
    denied = fleet.call(lambda: fleet.broker.stats.subscriptions_denied)
    assert denied == (1 if granted == 0x80 else 0)


def test_device_rules_come_before_the_tenants(fleet: ThreadedGateway) -> None:
    observer = paho_client(fleet.port, "observer")
    observer.subscribe("#", 1)
    rules = [AclRuleModel(action="publish", topic="devices/{device_id}/secret/#", allow=True)]
    with _device(fleet, "vault", acl=rules) as device:
        device.send(Publish(topic="devices/vault/secret/key", payload=b"ok", qos=1, packet_id=1))
        device.recv()
    assert observer.get().topic == "devices/vault/secret/key"
    observer.disconnect()


def test_default_templates_can_be_switched_off(gateway_factory: GatewayFactory) -> None:
    gateway = gateway_factory(allow_anonymous=True)
    add_tenant(gateway, "strict", default_acl=False, acl=[AclRuleModel(topic="in/{device_id}")])
    with _device(gateway, "d1", tenant_id="strict") as device:
        device.send(Subscribe(packet_id=1, subscriptions=(("devices/d1/#", 0), ("in/d1", 0))))
        assert device.recv() == Suback(packet_id=1, return_codes=(0x80, 0))


@pytest.mark.parametrize(
    ("pattern", "topic_filter", "expected"),
    [
        ("devices/d1/#", "devices/d1/#", True),
        ("devices/d1/#", "devices/d1", True),
        ("devices/d1/#", "devices/+/x", False),
        ("a/+", "a/+", True),
        ("a/+", "a/#", False),
        ("a/+/c", "a/b/c", True),
        ("#", "anything/at/all", True),
        ("a/b", "a/b/c", False),
    ],
)
def test_covers(pattern: str, topic_filter: str, expected: bool) -> None:
    assert covers(pattern, topic_filter) is expected


@pytest.mark.parametrize(
    ("first", "second", "expected"),
    [
        ("a/#", "a", True),
        ("a/+", "a/b/c", False),
        ("+/b", "a/+", True),
        ("a", "b", False),
        ("a/#", "b/#", False),
    ],
)
def test_overlaps(first: str, second: str, expected: bool) -> None:
    assert overlaps(first, second) is expected
    assert overlaps(second, first) is expected


def test_publish_decisions_are_cached() -> None:
    acl = TopicAcl([AclRule("devices/d1/#", publish=True, subscribe=True, allow=True)])
    assert acl.may_publish("devices/d1/t")
    assert acl._publish_cache == {"devices/d1/t": True}
    assert not acl.may_publish("devices/d2/t")
    assert acl._publish_cache["devices/d2/t"] is False


def test_changing_a_tenants_rules_disconnects_its_devices(fleet: ThreadedGateway) -> None:
    """A connected device keeps the rules it was let in under, so a tenant change must close it."""
    add_tenant(fleet, "other")
    settings = registry(fleet).tenant("acme").model_dump(include=set(TenantSettings.model_fields))
    _, token = add_device(fleet, "d1")
    device = RawClient(fleet.port)
    assert device.connect("d1", username="d1", password=token.encode()).return_code == 0
    with device, _device(fleet, "d2", tenant_id="other") as bystander:
        renamed = TenantSettings.model_validate({**settings, "name": "Acme Inc."})
        fleet.run(registry(fleet).update_tenant("acme", renamed))
        device.send(Pingreq())
        assert device.recv() == Pingresp()  # a new name changes nothing a device is let in under

        narrower = [AclRuleModel(action="publish", topic="devices/{device_id}/telemetry", allow=False)]
        narrowed = TenantSettings.model_validate({**renamed.model_dump(), "acl": narrower})
        fleet.run(registry(fleet).update_tenant("acme", narrowed))
        device.assert_closed()
        bystander.send(Pingreq())
        assert bystander.recv() == Pingresp()  # another tenant's device stays

    observer = paho_client(fleet.port, "observer")
    observer.subscribe("devices/#", 1)
    with RawClient(fleet.port) as again:
        assert again.connect("d1", username="d1", password=token.encode()).return_code == 0
        again.send(Publish(topic="devices/d1/telemetry", payload=b"x", qos=1, packet_id=1))
        assert again.recv() == Puback(packet_id=1)
        again.send(Publish(topic="devices/d1/status", payload=b"y", qos=1, packet_id=2))
        assert again.recv() == Puback(packet_id=2)
    assert observer.get().topic == "devices/d1/status"  # the new rule holds after reconnecting
    observer.assert_no_message()
    observer.disconnect()


def test_changing_a_devices_rules_disconnects_it(fleet: ThreadedGateway) -> None:
    _, token = add_device(fleet, "d1")
    device = RawClient(fleet.port)
    assert device.connect("d1", username="d1", password=token.encode()).return_code == 0
    with device:
        current = fleet.run(registry(fleet).device("d1"))
        settings = current.model_dump(include=set(DeviceSettings.model_fields))
        fleet.run(
            registry(fleet).update_device("d1", DeviceSettings.model_validate({**settings, "notes": "x"}))
        )
        device.send(Pingreq())
        assert device.recv() == Pingresp()  # notes are not what it was let in under
        wider = [AclRuleModel(action="subscribe", topic="fleet/#")]
        fleet.run(
            registry(fleet).update_device("d1", DeviceSettings.model_validate({**settings, "acl": wider}))
        )
        device.assert_closed()
    with RawClient(fleet.port) as again:
        assert again.connect("d1", username="d1", password=token.encode()).return_code == 0
        again.send(Subscribe(packet_id=1, subscriptions=(("fleet/#", 0),)))
        assert again.recv() == Suback(packet_id=1, return_codes=(0,))
