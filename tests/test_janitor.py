"""The janitor frees a closed session's objects soon after the session ends, and not more often than allowed."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest
import torch

from ui.janitor import Janitor


class _Page:
    """A page's objects as Streamlit leaves them: a reference cycle that holds a model."""

    def __init__(self) -> None:
        self.model = torch.nn.Linear(256, 256)
        self.me = self


@pytest.fixture
def no_automatic_collection() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _closed_page() -> weakref.ref[torch.nn.Module]:
    page = _Page()
    return weakref.ref(page.model)  # the page itself is unreachable from here on, but alive in its cycle


@pytest.mark.usefixtures("no_automatic_collection")
def test_a_closed_sessions_cycle_is_freed_after_the_grace_and_not_before() -> None:
    active, now = {"a", "b"}, [0.0]
    janitor = Janitor(active.__contains__, grace_s=5, every_s=30, clock=lambda: now[0])
    janitor.saw("a")
    janitor.saw("b")
    model = _closed_page()
    assert not janitor.tick() and model() is not None  # nobody left: nothing to do

    active.discard("a")  # the tab of session "a" closed
    assert not janitor.tick()
    now[0] = 4.9
    assert not janitor.tick() and model() is not None  # Streamlit may still hold the session
    now[0] = 5.0
    assert janitor.tick() and model() is None and janitor.collections == 1

    model = _closed_page()
    active.discard("b")
    now[0] = 6.0
    assert not janitor.tick()
    now[0] = 11.0
    assert not janitor.tick() and model() is not None  # due, but the last collection was 6 s ago
    now[0] = 35.0
    assert janitor.tick() and model() is None and janitor.collections == 2
    now[0] = 100.0
    assert not janitor.tick()  # nothing ended since


@pytest.mark.usefixtures("no_automatic_collection")
def test_a_session_that_comes_back_is_watched_again() -> None:
    active, now = {"a"}, [0.0]
    janitor = Janitor(active.__contains__, grace_s=1, every_s=1, clock=lambda: now[0])
    janitor.saw("a")
    active.discard("a")  # a network blip
    janitor.tick()
    now[0] = 1.0
    assert janitor.tick()
    active.add("a")
    janitor.saw("a")  # its next run
    now[0] = 2.0
    assert not janitor.tick()
    active.discard("a")
    janitor.tick()
    now[0] = 3.0
    assert janitor.tick() and janitor.collections == 2
