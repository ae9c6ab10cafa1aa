"""Language resolution for a call: IVR choice, then caller's country, then the DID's country."""

from __future__ import annotations

from collections.abc import Iterable

from ccbridge.config.model import Config, Country, Number
from ccbridge.routing.reasons import Reason

__all__ = ["CALLER_PREFIX", "DID_COUNTRY", "IVR_LANGUAGE", "LanguageResolver", "resolve_language"]

IVR_LANGUAGE = Reason.IVR_LANGUAGE
CALLER_PREFIX = Reason.CALLER_PREFIX
DID_COUNTRY = Reason.DID_COUNTRY


class LanguageResolver:
    """Precomputed lookup tables for :func:`resolve_language`, built once per Config."""

    __slots__ = ("_by_country", "_fallback", "_languages", "_lengths", "_prefixes")

    def __init__(
        self, countries: Iterable[Country], languages: Iterable[str], fallback: str = ""
    ) -> None:
        self._languages = frozenset(languages)
        # Only countries whose default language is configured can decide a call.
        self._prefixes = {
            c.calling_code: c.default_language
            for c in countries
            if c.default_language in self._languages and c.calling_code.isdigit()
        }
        self._by_country = {c.code: c.default_language for c in countries}
        # Longest first: "880" (BD) must win over a hypothetical "88".
        self._lengths = sorted({len(p) for p in self._prefixes}, reverse=True)
        self._fallback = fallback

    @classmethod
    def from_config(cls, config: Config) -> LanguageResolver:
        fallback = config.languages[0] if config.languages else ""
        return cls(config.countries, config.languages, fallback)

    def calling_codes(self) -> dict[str, str]:
        """Calling code -> language for every code that can decide a call (the dialplan's
        copy of this resolver is rendered from it)."""
        return dict(self._prefixes)

    def did_language(self, number: Number) -> str:
        """The language of a call nothing else decides: the number's country's."""
        return self._by_country.get(number.country, self._fallback)

    def caller_language(self, caller: str) -> str | None:
        """The default language of the caller's country, from an E.164 or 00-prefixed number."""
        if caller.startswith("+"):
            digits = caller[1:]
        elif caller.startswith("00"):
            digits = caller[2:]
        else:
            # National or withheld numbers say nothing reliable about the country.
            return None
        if not digits.isdigit():
            return None
        for n in self._lengths:
            lang = self._prefixes.get(digits[:n])
            if lang is not None:
                # The longest code decides; a bare code with no subscriber part is no number.
                return lang if len(digits) > n else None
        return None

    def resolve(self, number: Number, caller: str, ivr_language: str | None) -> tuple[str, Reason]:
        if ivr_language is not None and ivr_language in self._languages:
            return ivr_language, IVR_LANGUAGE
        lang = self.caller_language(caller)
        if lang is not None:
            return lang, CALLER_PREFIX
        # A DID whose country is missing from config falls back to the first language.
        return self.did_language(number), DID_COUNTRY


def resolve_language(
    config: Config, number: Number, caller: str, ivr_language: str | None
) -> tuple[str, Reason]:
    """Return ``(language, reason)`` with reason 'ivr_language' | 'caller_prefix' | 'did_country'.

    Order: the language picked in the IVR (if configured), then the default language of
    the country whose calling code is the longest prefix of the caller's ``+CC``/``00CC``
    number, then the default language of the DID's country.
    """
    return LanguageResolver.from_config(config).resolve(number, caller, ivr_language)
