"""Parse `access:` (roles defined in the config) and `bridge.tls` (HTTPS for the API).

Errors name file, line and key like the rest: a role naming a permission outside the
vocabulary or a site that does not exist, a TLS file that is missing, unreadable or
does not match its key.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from ccbridge.access.roles import BUILTIN, Role, check_pattern
from ccbridge.config.reader import Reader, kind
from ccbridge.config.tls_loader import check_key_pair


@dataclass(frozen=True, slots=True)
class AccessSettings:
    """The roles a user may be given: the built-in ones and those of the config."""

    roles: Mapping[str, Role] = field(default_factory=lambda: dict(BUILTIN))
    # Failed logins (or token uses) from one address within `window` seconds before
    # that address is refused for the rest of the window.
    max_failures: int = 5
    failure_window: float = 60.0
    token_days: float = 30.0  # default lifetime of a token made by `ccbridge users token`
    login_hours: float = 8.0  # lifetime of a token made by POST /api/v1/login


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """`bridge.tls`: the API's certificate chain and key (PEM files)."""

    cert: str
    key: str

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cert, self.key)
        return ctx


def parse_access(r: Reader, v: Any, sites: Iterable[str]) -> AccessSettings:
    d = r.mapping(v, {"roles", "max_failures", "failure_window", "token_days", "login_hours"})
    known = set(sites)
    roles = dict(BUILTIN)
    if "roles" in d:
        with r.at("roles", d):
            rmap = r.mapping(d["roles"])
            for name, rv in rmap.items():
                with r.at(name, rmap):
                    role = r.collect(partial(_role, r, str(name), rv, known))
                    if role is not None:
                        roles[role.name] = role
    return AccessSettings(
        roles=roles,
        **r.given(
            d,
            {
                "max_failures": r.integer(1, 1000),
                "failure_window": r.number(1, 86400),
                "token_days": r.number(0.001, 3650),
                "login_hours": r.number(0.01, 720),
            },
        ),
    )


def _role(r: Reader, name: str, v: Any, sites: set[str]) -> Role:
    r.name(name)
    if name in BUILTIN:
        raise r.fail(f"'{name}' is a built-in role: give yours another name")
    d = r.mapping(v, {"acl", "description"}, {"acl"})
    acl = r.req(d, "acl", r.str_list(r.string))
    if not acl:
        with r.at("acl", d):
            raise r.fail("a role needs at least one ACL string")
    with r.at("acl", d):
        for i, pattern in enumerate(acl):
            with r.at(i):
                why = check_pattern(pattern, sites)
                if why is not None:
                    raise r.fail(why)
    return Role(name, acl, r.get(d, "description", r.string, ""))


def parse_tls(r: Reader, v: Any) -> TlsSettings:
    d = r.mapping(v, {"cert", "key"}, {"cert", "key"})
    cert = r.req(d, "cert", lambda x: _pem_file(r, x))
    key = r.req(d, "key", lambda x: _pem_file(r, x))
    with r.at("key", d):
        check_key_pair(r, cert, key)
    return TlsSettings(cert, key)


def _pem_file(r: Reader, v: Any) -> str:
    if not isinstance(v, str) or not v:
        raise r.fail(f"expected a file path, got {kind(v)}")
    p = Path(v)
    p = p if p.is_absolute() else r.base_dir / p
    try:
        text = p.read_bytes()
    except FileNotFoundError:
        raise r.fail(f"no such file: {p}") from None
    except OSError as exc:
        raise r.fail(f"cannot read {p}: {exc.strerror}") from None
    if b"-----BEGIN " not in text:
        raise r.fail(f"{p} is not a PEM file")
    return str(p)
