"""Pure supervision logic: states, timers, schedules, backoff. No fork, sockets or sqlite here."""
