"""Domain errors: a stable machine id, a message and details; never an HTTP status."""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    """An operation refused or failed, e.g. ``ServiceError("no-such-site", "...", site=x)``.

    ``error_id`` is part of the API's contract (clients branch on it); which HTTP status
    it becomes is decided by the HTTP layer alone (ccbridge/http/base.py).
    """

    def __init__(self, error_id: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.error_id = error_id
        self.details = details

    @property
    def message(self) -> str:
        return str(self)
