"""The report worker pauses garbage collection while it builds a report and restores the
state it found, whatever the build does."""

from __future__ import annotations

import gc

import pytest

from ccbridge.reports.worker import collections_paused


def test_collections_are_paused_inside_and_restored_after_an_error() -> None:
    assert gc.isenabled()
    with collections_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(ValueError), collections_paused():
        raise ValueError("a report failed")
    assert gc.isenabled()


def test_a_caller_that_paused_them_itself_keeps_them_paused() -> None:
    gc.disable()
    try:
        with collections_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
