"""Real Mosquitto brokers for upstream tests, on ephemeral loopback ports."""

from __future__ import annotations

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

    def __init__(self, directory: Path, *, extra_config: str = "") -> None:
        self.executable = require_binary("mosquitto")
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.config = directory / "mosquitto.conf"
        self.config.write_text(
            f"listener {self.port} 127.0.0.1\n"
            "allow_anonymous true\n"
            "max_queued_messages 0\n"
            "persistence false\n"
            "log_dest stderr\n" + extra_config
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

    def stop(self) -> None:
        """Terminate (as a crash would look to clients: no DISCONNECT to them)."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(TIMEOUT)
        self.process = None

    def log(self) -> str:
        path = self.directory / "mosquitto.log"
        return path.read_text(errors="replace") if path.exists() else ""
