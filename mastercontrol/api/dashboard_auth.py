"""The dashboard's logins: server-side sessions in memory, their CSRF tokens and flash messages,
and the throttle on failed logins.

Owns the session table of one central service process: `login()` makes a session (a random
id for the cookie, a random CSRF token for the forms), `get()` finds an unexpired one and
slides its idle deadline, `logout()` drops it. Sessions live in memory only: restarting the
central logs every operator out, and nothing secret is ever written to disk. The table is
bounded (the oldest session goes first) and thread-safe (Waitress serves from several
threads). Comparisons of secrets are constant-time. `LoginThrottle` bounds how fast the
operator token can be guessed on `/login`: failures per source address and overall in a
sliding window; a block always ends with the window, so a correct token is never locked out
for longer than that. Imports only the standard library; not
bottle, daemon/ or child/.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

IDLE_SECONDS = 8 * 3600.0  # a session unused this long is gone
MAX_AGE_SECONDS = 7 * 86400.0  # and none lives longer than this, used or not
MAX_SESSIONS = 1000
MAX_FLASHES = 10
MAX_ID_CHARS = 128
LOGIN_WINDOW_SECONDS = 60.0
LOGIN_FAILURES_PER_ADDRESS = 5  # per window, then 429 until the oldest one ages out
LOGIN_FAILURES_OVERALL = 50  # per window, from every address together
MAX_TRACKED_ADDRESSES = 10_000


@dataclass
class Session:
    sid: str
    csrf: str
    created: float
    seen: float
    flashes: list[tuple[str, str]] = field(default_factory=list)  # (kind, text)

    def csrf_ok(self, offered: str | None) -> bool:
        return same_secret(offered, self.csrf)

    def flash(self, kind: str, text: str) -> None:
        self.flashes = [*self.flashes, (kind, text)][-MAX_FLASHES:]

    def take_flashes(self) -> list[tuple[str, str]]:
        out, self.flashes = self.flashes, []
        return out


def same_secret(offered: str | None, expected: str) -> bool:
    """Constant-time equality; any odd input (None, non-ASCII, huge) is simply unequal."""
    if not offered or len(offered) > MAX_ID_CHARS or not offered.isascii():
        return False
    return hmac.compare_digest(offered.encode("ascii"), expected.encode("ascii"))


def new_secret() -> str:
    return secrets.token_urlsafe(32)


class Sessions:
    """The session table; `clock` is monotonic seconds (injected by tests)."""

    def __init__(
        self,
        *,
        idle: float = IDLE_SECONDS,
        max_age: float = MAX_AGE_SECONDS,
        limit: int = MAX_SESSIONS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.idle = idle
        self.max_age = max_age
        self.limit = limit
        self.clock = clock
        self._lock = threading.Lock()
        self._table: OrderedDict[str, Session] = OrderedDict()

    def login(self) -> Session:
        now = self.clock()
        session = Session(new_secret(), new_secret(), now, now)
        with self._lock:
            self._table[session.sid] = session
            while len(self._table) > self.limit:
                self._table.popitem(last=False)
        return session

    def get(self, sid: str | None) -> Session | None:
        if not sid or len(sid) > MAX_ID_CHARS or not sid.isascii():
            return None
        now = self.clock()
        with self._lock:
            # A dict lookup by the cookie's value: the id is 256 random bits, so guessing one
            # through timing is not a concern (the CSRF token is compared in constant time).
            session = self._table.get(sid)
            if session is None:
                return None
            if now - session.seen >= self.idle or now - session.created >= self.max_age:
                del self._table[sid]
                return None
            session.seen = now
            self._table.move_to_end(sid)
            return session

    def logout(self, sid: str | None) -> None:
        if sid:
            with self._lock:
                self._table.pop(sid, None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._table)


class LoginThrottle:
    """Failed logins in a sliding window; `clock` is monotonic seconds (injected by tests).

    `retry_after(addr)` is None when `addr` may try, else the seconds to wait (for 429's
    Retry-After). An address past its own limit waits until its oldest failure leaves the
    window. Past the overall limit, only addresses with a recent failure wait: a fresh address
    still gets its try, so many addresses guessing at once cannot lock the operator out of
    the dashboard for as long as they keep at it."""

    def __init__(
        self,
        *,
        per_address: int = LOGIN_FAILURES_PER_ADDRESS,
        overall: int = LOGIN_FAILURES_OVERALL,
        window: float = LOGIN_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.per_address = per_address
        self.overall = overall
        self.window = window
        self.clock = clock
        self._lock = threading.Lock()
        self._all: deque[float] = deque()
        self._by_address: OrderedDict[str, deque[float]] = OrderedDict()

    def _prune(self, now: float) -> None:
        horizon = now - self.window
        while self._all and self._all[0] <= horizon:
            self._all.popleft()
        # Addresses are kept in the order of their latest failure: stale ones are at the front.
        while self._by_address:
            addr, times = next(iter(self._by_address.items()))
            if times and times[-1] > horizon and len(self._by_address) <= MAX_TRACKED_ADDRESSES:
                break
            del self._by_address[addr]

    def retry_after(self, addr: str) -> float | None:
        now = self.clock()
        with self._lock:
            self._prune(now)
            times = self._by_address.get(addr)
            if not times:
                return None
            horizon = now - self.window
            while times and times[0] <= horizon:
                times.popleft()
            if len(times) >= self.per_address:
                return times[0] + self.window - now
            if times and len(self._all) >= self.overall:
                return self._all[0] + self.window - now
            return None

    def failed(self, addr: str) -> None:
        now = self.clock()
        with self._lock:
            self._all.append(now)
            times = self._by_address.pop(addr, None) or deque()
            times.append(now)
            self._by_address[addr] = times  # to the end: the latest failure
            self._prune(now)

    def succeeded(self, addr: str) -> None:
        with self._lock:
            self._by_address.pop(addr, None)
