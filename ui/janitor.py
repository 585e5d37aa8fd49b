"""The memory of closed sessions, freed soon after Streamlit lets them go.

Streamlit's garbage collection after every script run is off (.streamlit/config.toml): it took 0.1 s of CPU
per rerun from the training thread. A page's objects (its model, its activations, its figures) sit in
reference cycles, so a closed session's are freed only by a full collection, and Python's own full
collection comes rarely on a heap of half a million objects: in a soak test, the models of 15 closed
sessions (727 MB) were seen waiting for it. The janitor runs one after sessions end: once Streamlit has
dropped them (`server.disconnectedSessionTTL` after they disconnect), at most once every
`LIMITS.collect_seconds`, and then hands the CUDA memory it freed back to the driver.
"""

from __future__ import annotations

import gc
import math
import threading
import time
from collections.abc import Callable

import streamlit as st
import torch
from streamlit.runtime import Runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from server.settings import LIMITS

GRACE_S = 2.0  # after the TTL: Streamlit drops an expired session on the next write to its session store
TICK_S = 1.0


class Janitor:
    """Collects garbage `grace_s` after a session it has seen stops being active, at most every `every_s`."""

    def __init__(self, is_active: Callable[[str], bool], *, grace_s: float, every_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._is_active, self._grace_s, self._every_s, self._clock = is_active, grace_s, every_s, clock
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._due: list[float] = []  # when the sessions that ended can be collected
        self._last = -math.inf
        self.collections = 0

    def saw(self, session_id: str) -> None:
        with self._lock:
            self._seen.add(session_id)

    def tick(self) -> bool:
        """Note the sessions that ended; collect if one is due. True when it collected."""
        now = self._clock()
        with self._lock:
            ended = {s for s in self._seen if not self._is_active(s)}
            self._seen -= ended  # a session that comes back (a reconnect) is seen again on its next run
            if ended:
                self._due.append(now + self._grace_s)
            if not self._due or min(self._due) > now or now - self._last < self._every_s:
                return False
            self._due = [t for t in self._due if t > now]
            self._last = now
        gc.collect()
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()
        self.collections += 1
        return True

    def run_forever(self, every_s: float = TICK_S) -> None:
        while True:
            time.sleep(every_s)
            self.tick()


def session_alive(session_id: str) -> bool:
    """Whether a browser is connected to that session now (always False under AppTest, which has no server)."""
    return Runtime.exists() and Runtime.instance().is_active_session(session_id)


@st.cache_resource
def janitor() -> Janitor:
    """One janitor for the whole server, with its thread."""
    ttl = float(st.get_option("server.disconnectedSessionTTL"))
    j = Janitor(session_alive, grace_s=ttl + GRACE_S, every_s=LIMITS.collect_seconds)
    threading.Thread(target=j.run_forever, name="session-janitor", daemon=True).start()
    return j


def watch_this_session() -> None:
    """Let the janitor know this session (app.py calls it on every run)."""
    ctx = get_script_run_ctx()
    if ctx is not None and Runtime.exists():  # AppTest runs pages without a server and its sessions
        janitor().saw(ctx.session_id)
