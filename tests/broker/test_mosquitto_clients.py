"""A real C client: mosquitto_pub and mosquitto_sub through the gateway."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from mqttproxy.broker.auth import hash_password
from tests.helpers import TIMEOUT, ThreadedGateway, paho_client, require_binary, wait_until


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_mosquitto_pub_to_mosquitto_sub(gateway: ThreadedGateway, qos: int) -> None:
    sub = require_binary("mosquitto_sub")
    pub = require_binary("mosquitto_pub")
    subscriber = subprocess.Popen(
        [
            sub,
            "-h",
            "127.0.0.1",
            "-p",
            str(gateway.port),
            "-i",
            "c-sub",
            "-t",
            "plant/#",
            "-q",
            str(qos),
            "-C",
            "3",
            "-v",
            "-W",
            "10",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_until(lambda: gateway.call(lambda: gateway.broker.router.subscription_count) == 1)
        for index in range(3):
            subprocess.run(
                [
                    pub,
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(gateway.port),
                    "-t",
                    f"plant/line{index}",
                    "-m",
                    f"reading {index}",
                    "-q",
                    str(qos),
                ],
                check=True,
                timeout=TIMEOUT,
            )
        out, err = subscriber.communicate(timeout=TIMEOUT)
    finally:
        if subscriber.poll() is None:
            subscriber.kill()
            subscriber.communicate()
    assert subscriber.returncode == 0, err
    assert out.splitlines() == [f"plant/line{index} reading {index}" for index in range(3)]


def test_mosquitto_sub_receives_retained_and_paho_sees_mosquitto_pub(gateway: ThreadedGateway) -> None:
    pub = require_binary("mosquitto_pub")
    sub = require_binary("mosquitto_sub")
    subprocess.run(
        [pub, "-h", "127.0.0.1", "-p", str(gateway.port), "-t", "cfg/site", "-m", "v7", "-r", "-q", "1"],
        check=True,
        timeout=TIMEOUT,
    )
    result = subprocess.run(
        [
            sub,
            "-h",
            "127.0.0.1",
            "-p",
            str(gateway.port),
            "-t",
            "cfg/#",
            "-C",
            "1",
            "-v",
            "-W",
            "5",
            "--retained-only",
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=True,
    )
    assert result.stdout.strip() == "cfg/site v7"

    watcher = paho_client(gateway.port, "watcher")
    watcher.subscribe("c/to/paho", 2)
    subprocess.run(
        [pub, "-h", "127.0.0.1", "-p", str(gateway.port), "-t", "c/to/paho", "-m", "hi", "-q", "2"],
        check=True,
        timeout=TIMEOUT,
    )
    assert watcher.get().payload == b"hi"
    watcher.disconnect()


def test_mosquitto_pub_with_bad_password_is_refused(gateway_factory: Callable[..., ThreadedGateway]) -> None:
    pub = require_binary("mosquitto_pub")
    gateway = gateway_factory(
        allow_anonymous=False, users=[{"username": "dev", "password_hash": hash_password("right")}]
    )
    base = [pub, "-h", "127.0.0.1", "-p", str(gateway.port), "-t", "a", "-m", "x", "-u", "dev"]
    assert subprocess.run([*base, "-P", "right"], capture_output=True, timeout=TIMEOUT).returncode == 0
    refused = subprocess.run([*base, "-P", "wrong"], capture_output=True, text=True, timeout=TIMEOUT)
    assert refused.returncode != 0
    assert "not authorised" in refused.stderr.lower() or "bad user name" in refused.stderr.lower()
