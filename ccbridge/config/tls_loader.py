"""Parse the TLS parts of a site (its certificate files, AMI over TLS) and check the files."""

from __future__ import annotations

import os
import ssl
from pathlib import Path
from typing import Any

from ccbridge.config.model import AMI_TLS_PORT, KEYS_DIR, AmiTls, HostPort, TlsFiles
from ccbridge.config.reader import Reader, kind
from ccbridge.config.yamlsrc import LineDict

DEFAULT_SIP_TLS_PORT = 5061


def parse_site_tls(r: Reader, v: Any, sip: HostPort) -> tuple[TlsFiles, HostPort]:
    """`sites.X.tls: {cert, key, ca, install_dir, sip}`: the files, checked, and the address
    of the site's PJSIP TLS transport (default: its SIP host, port 5061)."""
    d = r.mapping(v, {"cert", "key", "ca", "install_dir", "sip"}, {"cert", "key", "ca"})
    cert = r.req(d, "cert", lambda x: pem_path(r, x))
    key = r.req(d, "key", lambda x: pem_path(r, x))
    ca = r.req(d, "ca", lambda x: pem_path(r, x))
    with r.at("key", d):
        check_key_pair(r, cert, key)
    with r.at("ca", d):
        check_ca(r, ca)
    install_dir = r.get(d, "install_dir", r.string, KEYS_DIR)
    if not install_dir.startswith("/"):
        with r.at("install_dir", d):
            raise r.fail(f"'{install_dir}' must be an absolute path on the site's host")
    sip_tls = r.get(
        d, "sip", r.host_port(DEFAULT_SIP_TLS_PORT), HostPort(sip.host, DEFAULT_SIP_TLS_PORT)
    )
    if sip_tls == sip:
        with r.at("sip", d):
            raise r.fail(f"{sip_tls} is already the site's UDP SIP address")
    return TlsFiles(cert, key, ca, install_dir), sip_tls


def parse_ami_tls(r: Reader, v: Any, site_tls: TlsFiles | None, plain_port: int) -> AmiTls | None:
    """`ami.tls: true | false | {port, ca}`: the site's certificate (`tls`) on the TLS port,
    verified by the bridge with `ca` (default: the site's `tls.ca`)."""
    if v is False:
        return None
    if v is True:
        v = {}
    if not isinstance(v, dict):
        raise r.fail(f"expected true, false or a mapping, got {kind(v)}")
    d = v if isinstance(v, LineDict) else LineDict(v)
    d = r.mapping(d, {"port", "ca"})
    port = r.get(d, "port", r.integer(1, 65535), AMI_TLS_PORT)
    if port == plain_port:
        with r.at("port", d):
            raise r.fail(f"port {port} is the plain AMI port: TLS needs its own (5039)")
    if site_tls is None:
        raise r.fail(
            "AMI over TLS needs the site's `tls` (its certificate and key, and the CA the "
            "bridge verifies it with)"
        )
    ca = r.get(d, "ca", lambda x: pem_path(r, x), site_tls.ca)
    if ca != site_tls.ca:
        with r.at("ca", d):
            check_ca(r, ca)
    return AmiTls(ca=ca, port=port)


def pem_path(r: Reader, v: Any) -> str:
    """A readable file, relative paths taken from the config file's folder."""
    p = Path(r.string(v))
    p = Path(os.path.normpath(p if p.is_absolute() else (r.base_dir / p)))
    if not p.is_file():
        raise r.fail(f"no such file: {p}" if not p.exists() else f"not a file: {p}")
    if not os.access(p, os.R_OK):
        raise r.fail(f"cannot read {p}: permission denied")
    return str(p)


def check_key_pair(r: Reader, cert: str, key: str) -> None:
    """The certificate parses and the key is its own (OpenSSL compares them on loading)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        ctx.load_cert_chain(cert, key)
    except ssl.SSLError as exc:
        reason = str(exc.reason or exc)
        if "KEY_VALUES_MISMATCH" in reason.upper():
            raise r.fail(f"{key} is not the key of the certificate {cert}") from None
        raise r.fail(f"cannot load the certificate {cert} with the key {key}: {reason}") from None


def check_ca(r: Reader, ca: str) -> None:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    try:
        ctx.load_verify_locations(cafile=ca)
    except ssl.SSLError as exc:
        raise r.fail(f"{ca} holds no CA certificate (PEM): {exc.reason or exc}") from None
