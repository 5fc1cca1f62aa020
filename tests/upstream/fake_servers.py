"""Fake upstream brokers that misbehave at the TCP level, for the bad-upstream tests.

Each ``FakeServer`` listens on an ephemeral loopback port and serves every
connection from one background thread (a selector loop), so a test can count
what the gateway did (connections accepted, bytes read, connections still
open) while the gateway runs on its own loop. ``stop`` closes every socket and
joins the thread; use the server as a context manager so that happens when a
test fails too.
"""

from __future__ import annotations

import random
import selectors
import socket
import struct
import threading
import time
from enum import Enum
from types import TracebackType

JOIN_TIMEOUT = 5.0


class Behaviour(Enum):
    CLOSE = "close"  # accept, then close at once (FIN) before the CONNECT is read
    RESET = "reset"  # accept, then close with SO_LINGER 0: the client gets a RST
    BLACKHOLE = "blackhole"  # accept and read everything, never answer
    RANDOM = "random"  # answer the first bytes (the CONNECT) with seeded random bytes, stay open
    HTTP = "http"  # answer the first bytes with an HTTP 400 response, then close (as web servers do)
    FLAP = "flap"  # accept the CONNECT (CONNACK 0), then close ``hold`` seconds later: connected, then lost


# What the answering behaviours send back to the first bytes they read.
_ANSWERING = (Behaviour.RANDOM, Behaviour.HTTP, Behaviour.FLAP)
CONNACK_ACCEPTED = bytes((0x20, 0x02, 0x00, 0x00))
HTTP_RESPONSE = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"Content-Type: text/plain\r\n"
    b"Content-Length: 11\r\n"
    b"Connection: close\r\n"
    b"\r\n"
    b"Bad Request"
)


def random_answer(seed: int, size: int = 64) -> bytes:
    """Seeded random bytes led by a reserved packet type (0 or 15), so they never read as a CONNACK."""
    rng = random.Random(seed)
    first = rng.choice([*range(0x00, 0x10), *range(0xF0, 0x100)])
    return bytes((first,)) + rng.randbytes(size - 1)


class FakeServer:
    """A TCP server on 127.0.0.1 that treats every connection as ``behaviour`` says."""

    def __init__(self, behaviour: Behaviour, *, seed: int = 0, hold: float = 0.0) -> None:
        self.behaviour = behaviour
        self._hold = hold
        self._close_at: dict[socket.socket, float] = {}
        self._answer = {Behaviour.RANDOM: random_answer(seed), Behaviour.FLAP: CONNACK_ACCEPTED}.get(
            behaviour, HTTP_RESPONSE
        )
        self._lock = threading.Lock()
        self._accepted = 0
        self._received = bytearray()
        self._open: set[socket.socket] = set()
        self._answered: set[socket.socket] = set()
        self._stopping = False
        self._selector = selectors.DefaultSelector()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        # Written to by ``stop`` to wake the selector at once.
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._selector.register(self._listener, selectors.EVENT_READ)
        self._selector.register(self._wake_reader, selectors.EVENT_READ)
        self._thread = threading.Thread(target=self._serve, name=f"fake-{behaviour.value}", daemon=True)
        self._thread.start()

    # --- what the gateway did ------------------------------------------------------

    @property
    def accepted(self) -> int:
        """Connections accepted so far (each is one connection attempt by the gateway)."""
        with self._lock:
            return self._accepted

    @property
    def received(self) -> bytes:
        with self._lock:
            return bytes(self._received)

    @property
    def open_connections(self) -> int:
        """Connections the gateway has not closed yet."""
        with self._lock:
            return len(self._open)

    # --- lifecycle ------------------------------------------------------------------

    def __enter__(self) -> FakeServer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving, close every socket and join the thread. Safe to call twice."""
        if self._stopping:
            return
        self._stopping = True
        self._wake_writer.send(b"x")
        self._thread.join(JOIN_TIMEOUT)
        if self._thread.is_alive():  # pragma: no cover - the selector loop never blocks for long
            raise AssertionError(f"fake {self.behaviour.value} server thread did not stop")
        for sock in list(self._open):
            self._close(sock)
        self._selector.close()
        self._listener.close()
        self._wake_reader.close()
        self._wake_writer.close()

    # --- the selector loop ----------------------------------------------------------

    def _serve(self) -> None:
        while not self._stopping:
            now = time.monotonic()
            for sock, deadline in list(self._close_at.items()):
                if deadline <= now:
                    self._close(sock)
            timeout = min((deadline - now for deadline in self._close_at.values()), default=1.0)
            for key, _ in self._selector.select(timeout=max(0.0, timeout)):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self._wake_reader:
                    return
                if sock is self._listener:
                    self._accept()
                else:
                    self._read(sock)

    def _accept(self) -> None:
        try:
            sock, _ = self._listener.accept()
        except BlockingIOError:
            return
        with self._lock:
            self._accepted += 1
        if self.behaviour is Behaviour.CLOSE:
            sock.close()
        elif self.behaviour is Behaviour.RESET:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.close()
        else:
            sock.setblocking(False)
            with self._lock:
                self._open.add(sock)
            self._selector.register(sock, selectors.EVENT_READ)

    def _read(self, sock: socket.socket) -> None:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close(sock)
            return
        with self._lock:
            self._received += data
        if self.behaviour in _ANSWERING and sock not in self._answered:
            self._answered.add(sock)
            try:
                sock.sendall(self._answer)
            except OSError:
                self._close(sock)
                return
            if self.behaviour is Behaviour.HTTP:
                self._close(sock)
            elif self.behaviour is Behaviour.FLAP:
                self._close_at[sock] = time.monotonic() + self._hold

    def _close(self, sock: socket.socket) -> None:
        if sock.fileno() != -1:
            self._selector.unregister(sock)
        sock.close()
        with self._lock:
            self._open.discard(sock)
        self._answered.discard(sock)
        self._close_at.pop(sock, None)
