"""Rate limiting of failed logins, for operators and devices alike."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field


@dataclass
class LoginThrottle:
    """Failed logins per key (client address, user name, device): ``limit`` in ``window`` seconds."""

    limit: int = 5
    window: float = 60.0
    _failures: dict[str, deque[float]] = field(default_factory=dict)

    def retry_after(self, *keys: str) -> float:
        """Seconds until ``keys`` may try again; 0 if they may now."""
        now = time.monotonic()
        wait = 0.0
        for key in keys:
            failures = self._failures.get(key)
            if failures is None:
                continue
            while failures and failures[0] <= now - self.window:
                failures.popleft()
            if len(failures) >= self.limit:
                wait = max(wait, failures[0] + self.window - now)
        return wait

    def failed(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            self._failures.setdefault(key, deque()).append(now)
        if len(self._failures) > 10_000:  # forget idle keys so a scan cannot grow this forever
            self._failures = {
                key: value for key, value in self._failures.items() if value and value[-1] > now - self.window
            }

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self._failures.pop(key, None)
