"""A wall clock a test moves forward instead of sleeping: the code under test reads it where it would read
``time.time()``, and time still passes between the jumps, as it does for a real server."""

from __future__ import annotations

import threading
import time


class SkippingClock:
    """Real wall time plus what the test has skipped; read from any thread, never going backwards."""

    def __init__(self) -> None:
        self.skipped = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return time.time() + self.skipped

    def advance(self, seconds: float) -> None:
        """Skip ``seconds``: a report that needed them to generate is generated now."""
        with self._lock:
            self.skipped += seconds

    def advance_to(self, moment: float) -> None:
        """From now on, read ``moment`` at least."""
        with self._lock:
            self.skipped = max(self.skipped, moment - time.time())
