"""Scan log text for what must never be logged: full phone numbers, tokens, passwords, secrets.

A number in E.164 form (`+` and 7 to 15 digits) is a leak unless it is one of the
deployment's own numbers (its DIDs, or the value of a `did=` field: the number a call
dialled is the company's, not a person's; tests add DIDs of their own); the
``needles`` (secrets, tokens, the caller numbers a test used, in every spelling) are leaks
wherever they appear. Findings name the file and line, never the value itself.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from ccbridge.config.model import Config, SecretValue
from ccbridge.logs import mask_number

E164 = re.compile(r"(?<![\w*])\+\d{7,15}(?!\d)")
DID_FIELD = re.compile(r"\bdid=\"?(\+\d{7,15})(?!\d)")


@dataclass(frozen=True, slots=True)
class Leak:
    where: str  # file:line
    what: str  # the kind of value, and a masked form of it

    def __str__(self) -> str:
        return f"{self.where}: {self.what}"


def deployment_secrets(config: Config) -> dict[str, str]:
    """Every secret the config resolved, by the key that holds it."""
    found: dict[str, str] = {}
    if config.bridge.api_token is not None:
        found["bridge.api_token"] = config.bridge.api_token.reveal()
    for site in config.sites:
        found[f"sites.{site.name}.ami.secret"] = site.ami.secret.reveal()
    password = getattr(config.store, "password", None)
    if isinstance(password, SecretValue):
        found["store.password"] = password.reveal()
    return {key: value for key, value in found.items() if value}


def number_spellings(number: str) -> set[str]:
    """A caller number as a log might carry it: as dialled, without `+`, without the
    country code's first digits (a national form)."""
    digits = number.lstrip("+")
    return {number, digits, digits[2:], digits[3:]} - {""}


def scan(name: str, text: str, config: Config, needles: dict[str, str] | None = None) -> list[Leak]:
    """Leaks in ``text`` (the contents of the log ``name``)."""
    dids = {n.did for n in config.numbers}
    secrets = {**deployment_secrets(config), **(needles or {})}
    leaks: list[Leak] = []
    for i, line in enumerate(text.splitlines(), 1):
        where = f"{name}:{i}"
        dialled = set(DID_FIELD.findall(line))
        for match in E164.finditer(line):
            if match.group() not in dids and match.group() not in dialled:
                leaks.append(Leak(where, f"a full phone number {mask_number(match.group())}"))
        for what, value in secrets.items():
            if value in line:
                leaks.append(Leak(where, f"{what} ({len(value)} characters)"))
    return leaks


def caller_needles(numbers: Iterable[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for number in numbers:
        for spelling in number_spellings(number):
            out[f"caller {mask_number(number)} as {len(spelling)} digits"] = spelling
    return out
