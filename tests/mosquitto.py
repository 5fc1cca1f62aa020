"""Real Mosquitto brokers for upstream tests, on ephemeral loopback ports."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from tests.helpers import TIMEOUT, require_binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Mosquitto:
    """One mosquitto process; ``stop``/``start`` keep its port, so clients can come back."""

    def __init__(self, directory: Path, *, extra_config: str = "", persistence: bool = False) -> None:
        self.executable = require_binary("mosquitto")
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = directory / "mosquitto.conf"
        persistence_lines = "persistence false\n"
        if persistence:
            persistence_lines = f"persistence true\npersistence_location {directory}/\n"
        if os.geteuid() == 0:
            # Started as root, mosquitto switches to its own user, which may not
            # reach the test's temporary directory (its database, TLS keys).
            persistence_lines += "user root\n"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "max_queued_messages 0\n"
            f"{persistence_lines}"
            "log_dest stderr\n"
            f"{extra_config}"
        )
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Mosquitto:
        log = (self.directory / "mosquitto.log").open("ab")
        self.process = subprocess.Popen([self.executable, "-c", str(self.config)], stdout=log, stderr=log)
        log.close()
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"mosquitto did not start: {self.log()}") from None
                time.sleep(0.02)
            else:
                return self

    def stop(self, *, graceful: bool = False) -> None:
        """Kill it (a crash, to its clients), or with ``graceful`` let it save its persistence file."""
        if self.process is not None and self.process.poll() is None:
            if graceful:
                self.process.terminate()
            else:
                self.process.kill()
            self.process.wait(TIMEOUT)
        self.process = None

    def log(self) -> str:
        path = self.directory / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""
