"""The `mqttproxy` command: run, signals, check-config, hash-password."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mqttproxy.broker.auth import StaticUsers
from mqttproxy.config import StaticUser
from tests.helpers import TIMEOUT, paho_client

LISTENING = re.compile(r"listening mqtt tcp (\S+):(\d+)")


def _command(*args: str) -> list[str]:
    if args[0] == "run" and "--web-port" not in args:
        args = (*args, "--web-port", "0")  # never the default port 3000 in tests
    return [sys.executable, "-m", "mqttproxy", *args]


@contextmanager
def running(args: list[str], cwd: Path) -> Iterator[tuple[subprocess.Popen[str], int, list[str]]]:
    """Start the gateway, wait for its listening line, yield (process, port, log lines so far)."""
    process = subprocess.Popen(
        args, cwd=cwd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=_env()
    )
    lines: list[str] = []
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + TIMEOUT
        port = None
        while port is None:
            assert time.monotonic() < deadline, f"no listening line in: {lines}"
            line = process.stderr.readline()
            assert line, f"gateway exited early ({process.wait()}): {lines}"
            lines.append(line)
            match = LISTENING.search(line)
            if match:
                port = int(match.group(2))
        yield process, port, lines
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stderr is not None:
            process.stderr.close()


def _env() -> dict[str, str]:
    # The gateway is imported from this checkout, wherever the test runs.
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env


def _write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proxy.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_serves_until_signal_and_exits_zero(tmp_path: Path, signum: signal.Signals) -> None:
    config = _write_config(tmp_path, '[auth]\nallow_anonymous = true\n[mqtt]\nhost = "127.0.0.1"\n')
    args = _command("run", "--config", str(config), "--mqtt-port", "0", "--data-dir", str(tmp_path / "d"))
    with running(args, tmp_path) as (process, port, _lines):
        subscriber = paho_client(port, "sub")
        subscriber.subscribe("t", 1)
        publisher = paho_client(port, "pub")
        publisher.publish("t", b"through the real process", qos=1)
        assert subscriber.get().payload == b"through the real process"
        publisher.disconnect()
        process.send_signal(signum)
        assert process.wait(TIMEOUT) == 0
        # The gateway closed the remaining client on its way out.
        assert subscriber.disconnects.get(timeout=TIMEOUT) != 0
        subscriber.client.loop_stop()
    assert (tmp_path / "d").is_dir()


# Runs the command line with uvloop made unimportable, as on a machine without the 'fast' extra.
_WITHOUT_UVLOOP = (
    "import sys; sys.modules['uvloop'] = None; from mqttproxy.__main__ import main; sys.exit(main())"
)


@pytest.mark.parametrize("uvloop_installed", [True, False])
def test_run_uses_uvloop_when_installed(tmp_path: Path, uvloop_installed: bool) -> None:
    if uvloop_installed:
        pytest.importorskip("uvloop", reason="the 'fast' extra is not installed")
        args = _command("run", "--mqtt-port", "0")
    else:
        args = [sys.executable, "-c", _WITHOUT_UVLOOP, *_command("run", "--mqtt-port", "0")[3:]]
    with running(args, tmp_path) as (process, port, lines):
        paho_client(port, "anon", expect_code=5)  # serving on the loop it names
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 0
    assert f"event loop: {'uvloop' if uvloop_installed else 'asyncio'}" in "".join(lines)


def test_run_without_config_uses_defaults_and_refuses_anonymous(tmp_path: Path) -> None:
    args = _command("run", "--mqtt-port", "0", "--web-port", "0", "--log-level", "info")
    with running(args, tmp_path) as (process, port, lines):
        paho_client(port, "anon", expect_code=5)  # not authorized
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 0
        assert process.stderr is not None
        log = "".join(lines) + process.stderr.read()
    assert "allow_anonymous is false" in log
    assert re.search(r"listening http \S+:\d+", log)
    assert (tmp_path / "data").is_dir()  # the default data directory


def test_run_with_static_user(tmp_path: Path) -> None:
    password_hash = subprocess.run(
        _command("hash-password"), input="s3cret\n", capture_output=True, text=True, check=True, env=_env()
    ).stdout.strip()
    config = _write_config(
        tmp_path,
        f'[mqtt]\nhost = "127.0.0.1"\n[[auth.users]]\nusername = "dev"\npassword_hash = "{password_hash}"\n',
    )
    with running(_command("run", "--config", str(config), "--mqtt-port", "0"), tmp_path) as (
        process,
        port,
        _,
    ):
        paho_client(port, "good", username="dev", password="s3cret").disconnect()
        paho_client(port, "bad", username="dev", password="wrong", expect_code=4)
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 0
        assert process.stderr is not None
        assert "s3cret" not in process.stderr.read()


def test_hash_password_output_verifies(tmp_path: Path) -> None:
    result = subprocess.run(
        _command("hash-password"), input="correct horse\n", capture_output=True, text=True, env=_env()
    )
    assert result.returncode == 0
    password_hash = result.stdout.strip()
    assert password_hash.startswith("$argon2id$")
    assert len(StaticUsers([StaticUser(username="u", password_hash=password_hash)])) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[mqtt]\nprot = 1883\n", "mqtt.prot: unknown key"),
        ("[mqtt]\nport = 70000\n", "mqtt.port: Input should be less than or equal to 65535"),
        ('[auth]\nallow_anonymous = "maybe"\n', "auth.allow_anonymous: Input should be a valid boolean"),
        ("typo = 1\n", "typo: unknown key"),
        ("[mqtt\n", "not valid TOML"),
        ('[[auth.users]]\nusername = "a"\npassword_hash = "plain"\n', "auth.users.0.password_hash"),
        ('[mqtt.tls]\ncertfile = "missing.pem"\nkeyfile = "missing.key"\n', "mqtt.tls.certfile"),
    ],
)
@pytest.mark.parametrize("command", ["check-config", "run"])
def test_bad_config_is_one_clear_error_and_exit_2(
    tmp_path: Path, text: str, expected: str, command: str
) -> None:
    config = _write_config(tmp_path, text)
    result = subprocess.run(
        _command(command, "--config", str(config)),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=_env(),
    )
    assert result.returncode == 2
    assert str(config) in result.stderr
    assert expected in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_accepts_the_shipped_file() -> None:
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        _command("check-config", "--config", "config/proxy.toml"),
        cwd=root,
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_missing_config_file_is_exit_2(tmp_path: Path) -> None:
    result = subprocess.run(
        _command("check-config", "--config", str(tmp_path / "nope.toml")),
        capture_output=True,
        text=True,
        env=_env(),
    )
    assert result.returncode == 2
    assert "no such file" in result.stderr


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    config = _write_config(tmp_path, '[auth]\nallow_anonymous = true\n[mqtt]\nhost = "127.0.0.1"\n')
    args = _command("run", "--config", str(config), "--mqtt-port", "0")
    with running(args, tmp_path) as (process, port, _):
        second = subprocess.run(
            _command("run", "--config", str(config), "--mqtt-port", str(port)),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=_env(),
        )
        assert second.returncode == 1
        assert "cannot start" in second.stderr
        assert "Traceback" not in second.stderr
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 0


def test_web_listener_can_be_disabled(tmp_path: Path) -> None:
    config = _write_config(
        tmp_path, '[auth]\nallow_anonymous = true\n[mqtt]\nhost = "127.0.0.1"\n[web]\nenabled = false\n'
    )
    with running(_command("run", "--config", str(config), "--mqtt-port", "0"), tmp_path) as (
        process,
        port,
        lines,
    ):
        paho_client(port, "mqtt-only").disconnect()
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 0
        assert process.stderr is not None
        log = "".join(lines) + process.stderr.read()
    assert "web listener disabled" in log
    assert "listening http" not in log
