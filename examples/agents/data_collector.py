"""Example agent with params: pretend to fetch `batch_size` records from `source_url`.

No network access: the records are simulated, so the example runs anywhere.
"""

from __future__ import annotations

import random
from datetime import datetime


def run(source_url: str, batch_size: int = 100, seed: int | None = None) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size must be 1 or more, got {batch_size}")
    rng = random.Random(seed)
    values = [rng.uniform(15.0, 25.0) for _ in range(batch_size)]
    started = datetime.now().astimezone().isoformat(timespec="seconds")
    print(f"{started} collected {batch_size} records from {source_url}", flush=True)
    print(f"mean={sum(values) / len(values):.2f} min={min(values):.2f} max={max(values):.2f}")
