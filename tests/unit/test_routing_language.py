"""Language resolution: IVR choice, caller prefix (longest calling code), DID country."""

from __future__ import annotations

import pytest

from ccbridge.config.model import Country
from ccbridge.routing.language import resolve_language
from tests.unit.routing_factories import COUNTRIES, config, number, offering, site

CFG = config(
    [site("blr", [offering("orders", ["en", "hi"])])],
    [number("+918000000001", "orders", "blr", country="IN")],
    # "88" is a decoy shorter prefix: "880" (BD) must win by length.
    countries=(*COUNTRIES, Country("XX", "88", "en")),
)
IN_DID = CFG.numbers[0]


@pytest.mark.parametrize(
    ("caller", "ivr", "expected"),
    [
        ("+919812345678", "en", ("en", "ivr_language")),
        ("+8801712345678", "bn", ("bn", "ivr_language")),
        ("+8801712345678", "fr", ("bn", "caller_prefix")),  # unconfigured IVR choice ignored
        ("+8801712345678", None, ("bn", "caller_prefix")),
        ("008801712345678", None, ("bn", "caller_prefix")),
        ("+923001234567", None, ("ur", "caller_prefix")),
        ("+639171234567", None, ("tl", "caller_prefix")),
        ("+447700900123", None, ("en", "caller_prefix")),
        ("+8812345", None, ("en", "caller_prefix")),  # the decoy: no longer code matches
        ("+15551234567", None, ("hi", "did_country")),  # +1 not configured
        ("09812345678", None, ("hi", "did_country")),  # national format
        ("anonymous", None, ("hi", "did_country")),
        ("", None, ("hi", "did_country")),
        ("+880", None, ("hi", "did_country")),  # a bare code is not a number
    ],
)
def test_resolve_language(caller: str, ivr: str | None, expected: tuple[str, str]) -> None:
    assert resolve_language(CFG, IN_DID, caller, ivr) == expected


def test_country_default_not_configured_is_skipped() -> None:
    cfg = config(
        [site("blr", [offering("orders", ["en"])])],
        [number("+918000000001", "orders", "blr", country="IN")],
        languages=("en", "hi"),
    )
    # BD's default "bn" is not a configured language: fall through to the DID country.
    assert resolve_language(cfg, cfg.numbers[0], "+8801712345678", None) == ("hi", "did_country")
