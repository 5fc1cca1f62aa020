"""Rate limiting of failed logins, for operators and devices alike."""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field


@dataclass
class LoginThrottle:
    """Failed logins per key (client address, user name, device): ``limit`` in ``window`` seconds."""

    limit: int = 5
    window: float = 60.0
    max_keys: int = 100_000  # a flood of distinct keys forgets the least recently failed first
    # Ordered by last failure, oldest first, so forgetting is O(1) at the front;
    # each key keeps only its last ``limit`` failures.
    _failures: OrderedDict[str, deque[float]] = field(default_factory=OrderedDict)

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
        failures = self._failures
        for key in keys:
            entry = failures.get(key)
            if entry is None:
                entry = failures[key] = deque(maxlen=self.limit)
            else:
                failures.move_to_end(key)
            entry.append(now)
        # Forget keys whose last failure left the window, and the oldest beyond max_keys.
        expired = now - self.window
        while failures:
            oldest = next(iter(failures.values()))
            if oldest[-1] > expired and len(failures) <= self.max_keys:
                break
            failures.popitem(last=False)

    def succeeded(self, *keys: str) -> None:
        for key in keys:
            self._failures.pop(key, None)
