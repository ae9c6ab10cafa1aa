"""The `recording:` section: who is recorded, where sites leave the files, central storage, keys."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ccbridge.config.model import SecretValue
from ccbridge.config.reader import Reader, kind

ALL = 100  # percent: every call
NONE = 0
DEFAULT_SPOOL = "/var/spool/asterisk/ccb-recordings"
DEFAULT_STORAGE_DIR = "var/recordings"  # relative to the config file's folder
KEY_BYTES = 32  # AES-256
_PERCENT = re.compile(r"([0-9]{1,3}(?:\.[0-9]+)?)\s*%")
# A spool path goes into the dialplan (MixMonitor's file and its shell command): only
# characters that need no quoting anywhere.
_SAFE_PATH = re.compile(r"/[A-Za-z0-9_./-]*")
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")


@dataclass(frozen=True, slots=True)
class SiteRecording:
    """One site's overrides of the policy and where its recordings wait for the bridge."""

    policy: tuple[tuple[str, float], ...] = ()  # (service, percent) overriding the default
    spool: str = DEFAULT_SPOOL  # the folder as the site's Asterisk sees it
    pickup: str | None = None  # the same folder as the bridge sees it; None: ``spool``

    @property
    def pickup_dir(self) -> str:
        return self.pickup if self.pickup is not None else self.spool


@dataclass(frozen=True, slots=True)
class RecordingKey:
    key_id: str
    secret: SecretValue  # base64 of KEY_BYTES bytes


@dataclass(frozen=True, slots=True)
class RecordingSettings:
    """`record: all | none | PERCENT` per service (``policy``), overridable per site;
    an announcement per language played before the agent is connected; central storage
    (a directory the bridge owns) and the keys that encrypt it."""

    policy: tuple[tuple[str, float], ...] = ()  # (service, percent); unlisted: none
    sites: tuple[tuple[str, SiteRecording], ...] = ()
    announcement: tuple[tuple[str, str], ...] = ()  # (language, prompt)
    storage_dir: str = DEFAULT_STORAGE_DIR
    keys: tuple[RecordingKey, ...] = ()
    current_key: str = ""
    scan_interval: float = 5.0  # seconds between two scans of the sites' folders
    retry_max: float = 300.0  # seconds: the longest wait between two tries of a failed file
    chunk_size: int = 65536  # plaintext bytes per encrypted chunk
    # Filled by the loader from the top-level services, so every lookup has a default.
    services: tuple[str, ...] = field(default=())

    def site(self, name: str) -> SiteRecording:
        for n, s in self.sites:
            if n == name:
                return s
        return SiteRecording()

    def percent(self, site: str, service: str) -> float:
        """The share of calls of ``service`` answered at ``site`` that are recorded."""
        for svc, pct in self.site(site).policy:
            if svc == service:
                return pct
        for svc, pct in self.policy:
            if svc == service:
                return pct
        return NONE

    def prompt(self, language: str) -> str | None:
        for lang, prompt in self.announcement:
            if lang == language:
                return prompt
        return None


def policy_text(percent: float) -> str:
    """How the README and `check` write a policy: all, none, or 25%."""
    if percent >= ALL:
        return "all"
    if percent <= NONE:
        return "none"
    return f"{percent:g}%"


def parse_policy_value(r: Reader, v: Any) -> float:
    """``all``, ``none``, ``25%`` or a number 0-100 (a percentage)."""
    if isinstance(v, bool):
        raise r.fail(f"expected all, none or a percentage like 25%, got {kind(v)}")
    if isinstance(v, int | float):
        pct = float(v)
    else:
        s = r.string(v).strip().lower()
        if s == "all":
            return ALL
        if s == "none":
            return NONE
        m = _PERCENT.fullmatch(s)
        if m is None:
            raise r.fail(f"expected all, none or a percentage like 25%, got '{s}'")
        pct = float(m.group(1))
    if not 0 <= pct <= 100:
        raise r.fail(f"a percentage is 0-100, got {pct:g}")
    return pct


def _policy(r: Reader, v: Any, services: set[str]) -> tuple[tuple[str, float], ...]:
    d = r.mapping(v)
    out = []
    for svc in d:
        with r.at(svc, d):
            if svc not in services:
                raise r.fail(f"service '{svc}' is not in the top-level services")
            out.append((str(svc), parse_policy_value(r, d[svc])))
    return tuple(out)


def _safe_path(r: Reader, v: Any) -> str:
    s = r.string(v)
    if not _SAFE_PATH.fullmatch(s) or ".." in s.split("/"):
        raise r.fail(
            f"invalid folder '{s}': an absolute path of letters, digits, '_', '.', '-', '/'"
        )
    return s.rstrip("/") or "/"


def _local_path(r: Reader, v: Any) -> str:
    p = Path(r.string(v))
    return str(p if p.is_absolute() else (r.base_dir / p))


def _site(r: Reader, v: Any, services: set[str]) -> SiteRecording:
    d = r.mapping(v, {"policy", "spool", "pickup"})
    return SiteRecording(
        **r.given(
            d,
            {
                "policy": lambda x: _policy(r, x, services),
                "spool": lambda x: _safe_path(r, x),
                "pickup": lambda x: _local_path(r, x),
            },
        )
    )


def key_bytes(secret: SecretValue) -> bytes | None:
    """The key a secret holds (base64 of 32 bytes); None when it is not one."""
    try:
        raw = base64.b64decode(secret.reveal().strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == KEY_BYTES else None


def _keys(r: Reader, v: Any) -> tuple[str, tuple[RecordingKey, ...]]:
    d = r.mapping(v, None, {"current"})
    current = r.req(d, "current", r.string)
    keys = []
    for key_id in d:
        if key_id == "current":
            continue
        with r.at(key_id, d):
            if not _KEY_ID.fullmatch(str(key_id)):
                raise r.fail(f"invalid key ID '{key_id}': 1-32 letters, digits, '_' or '-'")
            secret = r.secret(d[key_id])
            if secret.source != "unresolved" and key_bytes(secret) is None:
                raise r.fail(
                    f"the key from {secret.source} is not base64 of {KEY_BYTES} bytes "
                    "(make one with: head -c 32 /dev/urandom | base64)"
                )
            keys.append(RecordingKey(str(key_id), secret))
    if current not in {k.key_id for k in keys}:
        with r.at("current", d):
            raise r.fail(f"current key '{current}' is not one of the keys listed here")
    return current, tuple(keys)


def parse_recording(
    r: Reader, v: Any, services: tuple[str, ...], sites: set[str], languages: set[str]
) -> RecordingSettings:
    from ccbridge.config.ivr_loader import parse_prompts  # the IVR's safe sound names

    d = r.mapping(
        v,
        {
            "policy",
            "sites",
            "announcement",
            "storage",
            "keys",
            "scan_interval",
            "retry_max",
            "chunk_size",
        },
        {"keys"},
    )
    svc = set(services)

    def site_map(x: Any) -> tuple[tuple[str, SiteRecording], ...]:
        m = r.mapping(x)
        out = []
        for name in m:
            with r.at(name, m):
                if name not in sites:
                    raise r.fail(f"site '{name}' is not in the top-level sites")
                out.append((str(name), _site(r, m[name], svc)))
        return tuple(out)

    def announcement(x: Any) -> tuple[tuple[str, str], ...]:
        m = r.mapping(x)
        out = []
        for lang in m:
            with r.at(lang, m):
                if lang not in languages:
                    raise r.fail(f"language '{lang}' is not in the top-level languages")
                (prompt,) = parse_prompts(r, m[lang])[:1] or ("",)
                out.append((str(lang), prompt))
        return tuple(out)

    def storage(x: Any) -> str:
        m = r.mapping(x, {"dir"}, {"dir"})
        return r.req(m, "dir", lambda y: _local_path(r, y))

    current, keys = r.req(d, "keys", lambda x: _keys(r, x))
    given = r.given(
        d,
        {
            "policy": lambda x: _policy(r, x, svc),
            "sites": site_map,
            "announcement": announcement,
            "storage": storage,
            "scan_interval": r.number(0.1, 3600),
            "retry_max": r.number(1, 86_400),
            "chunk_size": r.integer(4096, 4 * 1024 * 1024),
        },
        {"storage": "storage_dir"},
    )
    given.setdefault("storage_dir", _local_path(r, DEFAULT_STORAGE_DIR))
    return RecordingSettings(keys=keys, current_key=current, services=services, **given)
