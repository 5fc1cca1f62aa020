"""The ``mqttproxy`` command line."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from mqttproxy import __version__
from mqttproxy.app import serve
from mqttproxy.broker.auth import hash_password
from mqttproxy.config import DEFAULT_CONFIG_PATH, Config, load_config
from mqttproxy.errors import ConfigError
from mqttproxy.upstream.store import BrokerStore

EXIT_CONFIG_ERROR = 2

logger = logging.getLogger("mqttproxy")


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0..65535; 0 picks a free one)")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mqttproxy", description="MQTT edge gateway for IoT fleets.")
    parser.add_argument("--version", action="version", version=f"mqttproxy {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    config_help = f"TOML config file (default: {DEFAULT_CONFIG_PATH} if present, else built-in defaults)"
    run = commands.add_parser("run", help="run the gateway until SIGINT/SIGTERM")
    run.add_argument("--config", type=Path, help=config_help)
    run.add_argument("--data-dir", type=Path, help="directory for stored state (default: ./data)")
    run.add_argument("--mqtt-port", type=_port, help="MQTT TCP port (default 1883; 0 picks a free port)")
    run.add_argument("--web-port", type=_port, help="dashboard/API port (default 3000; 0 picks a free port)")
    run.add_argument("--log-level", choices=["debug", "info", "warning", "error"], help="default: info")

    check = commands.add_parser("check-config", help="validate a config file and exit")
    check.add_argument("--config", type=Path, help=config_help)

    commands.add_parser(
        "hash-password",
        help="print an Argon2 hash for [[auth.users]] password_hash (password from stdin or a prompt)",
    )
    return parser


def _apply_overrides(config: Config, args: argparse.Namespace) -> Config:
    mqtt = config.mqtt
    if args.mqtt_port is not None:
        mqtt = mqtt.model_copy(update={"port": args.mqtt_port})
    web = config.web
    if args.web_port is not None:
        web = web.model_copy(update={"port": args.web_port})
    update: dict[str, Any] = {"mqtt": mqtt, "web": web}
    if args.data_dir is not None:
        update["data_dir"] = args.data_dir
    if args.log_level is not None:
        update["log_level"] = args.log_level
    return config.model_copy(update=update)


def _event_loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def _run(config: Config) -> int:
    logging.basicConfig(
        level=config.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    with asyncio.Runner(loop_factory=_event_loop_factory()) as runner:
        logger.info("event loop: %s", type(runner.get_loop()).__module__.partition(".")[0])
        try:
            runner.run(serve(config))
        except ConfigError as exc:
            logger.error("cannot start: %s", exc)
            return EXIT_CONFIG_ERROR
        except OSError as exc:
            logger.error("cannot start: %s", exc)
            return 1
    return 0


def _hash_password() -> int:
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if password != getpass.getpass("Repeat: "):
            print("error: the passwords differ", file=sys.stderr)
            return 1
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("error: empty password", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def _check_config(config: Config, path: Path | None) -> int:
    source = path or (DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.is_file() else None)
    print(f"{source}: ok" if source else "no config file: built-in defaults are valid")
    store = BrokerStore(config.data_dir / "brokers.json", secret_key=config.upstream.effective_secret_key())
    try:
        records = store.load()
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    print(f"{store.path}: {len(records)} upstream broker(s), ok")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "hash-password":
        return _hash_password()
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG_ERROR
    if args.command == "check-config":
        return _check_config(config, args.config)
    return _run(_apply_overrides(config, args))


if __name__ == "__main__":
    sys.exit(main())
