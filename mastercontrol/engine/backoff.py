"""Restart backoff policy: how long to wait before a service's next start, and when to give up.

Pure arithmetic over a workload's restart settings (restart_delay, restart_delay_max,
max_retries, fatal_retry_delay). The daemon counts consecutive quick failures (a run that ends
before it counted as up: start_seconds, and its first passing health check if it has one) and
resets the count once a run stays up. Imports only the standard library and
mastercontrol.config.model; never reads a clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from mastercontrol.config.model import WorkloadConfig, field_default

# 2**60 times any sane delay is far past any cap; clamping the exponent avoids OverflowError
# for absurd failure counts without changing any result.
_MAX_EXPONENT = 60


@dataclass(frozen=True)
class Backoff:
    """Exponential doubling, capped, deterministic (no jitter).

    - `delay(n)` for the n-th consecutive quick failure (n >= 1) is
      `min(restart_delay * 2**(n-1), restart_delay_max)`: 1, 2, 4, 8 ... with the defaults.
      `delay(0)`, after a run that stayed up, is restart_delay: the least time between any two
      starts of a service (systemd's RestartSec), so a service that fails after running for a
      while cannot restart in a tight loop either. restart_delay 0 gives 0 for every n (restart
      at once; the FATAL limit still stops a quick-failure loop).
    - `exhausted(n)` is `n > max_retries`: a workload gets its first attempt plus `max_retries`
      retries (supervisor's startretries). With max_retries 5, the 6th consecutive quick failure
      makes it FATAL; with max_retries 0 the first quick failure does. The count is not reset
      by FATAL: a slow retry out of FATAL that fails quickly again is one more failure past the
      limit, so one try and FATAL again, not a new burst.
    - Out of FATAL, `fatal_delay()` is the slow retry period; None (fatal_retry_delay 0) means it
      stays FATAL until an operator starts it.

    No jitter: each workload has its own timer, so there is no thundering herd to break up
    within one device, and a fixed sequence is what operators (and tests) can predict.
    """

    # The workload settings' defaults (config/model.py), not written again here.
    restart_delay: float = field_default(WorkloadConfig, "restart_delay")
    restart_delay_max: float = field_default(WorkloadConfig, "restart_delay_max")
    max_retries: int = field_default(WorkloadConfig, "max_retries")
    fatal_retry_delay: float = field_default(WorkloadConfig, "fatal_retry_delay")

    def __post_init__(self) -> None:
        for name in ("restart_delay", "restart_delay_max", "fatal_retry_delay"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {self.max_retries!r}")

    @classmethod
    def from_config(cls, config: WorkloadConfig) -> Backoff:
        return cls(
            restart_delay=config.restart_delay,
            restart_delay_max=config.restart_delay_max,
            max_retries=config.max_retries,
            fatal_retry_delay=config.fatal_retry_delay,
        )

    def delay(self, failures: int) -> float:
        """Seconds from the end of a run to the next start, after `failures` consecutive quick
        failures (0: the run that ended had stayed up, so restart_delay)."""
        if self.restart_delay == 0:
            return 0.0
        exponent = min(max(failures - 1, 0), _MAX_EXPONENT)
        return float(min(self.restart_delay * 2.0**exponent, self.restart_delay_max))

    def exhausted(self, failures: int) -> bool:
        """True when `failures` consecutive quick failures use up the retries: go FATAL."""
        return failures > self.max_retries

    def fatal_delay(self) -> float | None:
        """Seconds between slow retries out of FATAL; None means stay FATAL."""
        return self.fatal_retry_delay if self.fatal_retry_delay > 0 else None
