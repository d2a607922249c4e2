"""A virtual monotonic clock for the fakes' time-driven limits (Automation's package-import limit):
seconds advance only through the injected ``sleep``, so pacing and progress lines run without waiting.
Used by the tests and the sandbox alike."""

from __future__ import annotations


class VirtualClock:
    """Monotonic seconds that only :meth:`sleep` advances; ``slept`` adds up every wait."""

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self.slept = 0.0

    def now(self) -> float:
        """The current virtual time (pass as ``rate_clock`` / ``clock``)."""
        return self.t

    def sleep(self, seconds: float) -> None:
        """Advance the clock instead of waiting (pass as ``sleep``)."""
        step = max(0.0, seconds)
        self.t += step
        self.slept += step
