"""The lab's TLS: a private CA and site certificates made with openssl, and the lab config
with AMI over TLS and TLS/SRTP trunks for one site pair.

Nothing here is in the repository: the CA and the keys are made on first use into the
lab's run directory (git-ignored, `CCBRIDGE_LAB_DIR`), valid for a year, remade when
missing or about to expire. examples/lab.yaml stays free of paths to them (every unit test
reads it): ``enable_lab_tls`` writes the lab's YAML with the TLS keys (`sites.X.tls`,
`ami.tls`, `trunks.X.tls`) beside the certificates and loads that.
"""

from __future__ import annotations

import fcntl
import hashlib
import ipaddress
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml

from ccbridge.config import load_config
from ccbridge.config.model import Config, Site
from ccbridge.config.tls_loader import DEFAULT_SIP_TLS_PORT
from ccbridge.lab.rootfs import LabError
from ccbridge.lab.sites import Lab

# The pair whose AMI links and trunks run over TLS in the lab (the others stay plain, so
# both kinds are exercised by every integration run).
LAB_TLS_SITES = ("bangalore", "manila")
_DAYS = 365
_RENEW_BEFORE_S = 7 * 86_400


@dataclass(frozen=True, slots=True)
class CertPair:
    cert: Path
    key: Path


def _openssl(*args: str) -> None:
    out = subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise LabError(f"openssl {args[0]} failed: {out.stderr.strip()[-500:]}")


def _fresh(cert: Path) -> bool:
    if not cert.exists():
        return False
    out = subprocess.run(
        ["openssl", "x509", "-checkend", str(_RENEW_BEFORE_S), "-noout", "-in", str(cert)],
        capture_output=True,
        check=False,
    )
    return out.returncode == 0


def make_ca(folder: Path, name: str = "ccbridge lab CA") -> CertPair:
    """A self-signed CA (RSA 2048) in ``folder``: ca.crt and ca.key (mode 0600)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = CertPair(folder / "ca.crt", folder / "ca.key")
    # The key file exists before openssl writes into it, so it is never readable by others.
    ca.key.touch(mode=0o600)
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256", "-days", str(_DAYS),
        "-keyout", str(ca.key), "-out", str(ca.cert), "-subj", f"/CN={name}",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    return ca


def issue(ca: CertPair, folder: Path, name: str, hosts: tuple[str, ...]) -> CertPair:
    """A certificate for ``name`` signed by ``ca``, valid for ``hosts`` (IP addresses or
    DNS names in subjectAltName: clients check the address they dialled), for both
    server and client use (sites authenticate each other on TLS trunks)."""
    folder.mkdir(parents=True, exist_ok=True)
    pair = CertPair(folder / f"{name}.crt", folder / f"{name}.key")
    csr = folder / f"{name}.csr"
    ext = folder / f"{name}.ext"
    sans = ",".join(f"IP:{h}" if _is_ip(h) else f"DNS:{h}" for h in hosts)
    ext.write_text(
        f"subjectAltName={sans}\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n"
    )
    pair.key.touch(mode=0o600)
    _openssl(
        "req", "-newkey", "rsa:2048", "-nodes", "-sha256", "-keyout", str(pair.key),
        "-out", str(csr), "-subj", f"/CN={name}",
    )  # fmt: skip
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key),
        "-CAcreateserial", "-days", str(_DAYS), "-sha256", "-extfile", str(ext),
        "-out", str(pair.cert),
    )  # fmt: skip
    csr.unlink()
    ext.unlink()
    return pair


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def site_hosts(site: Site) -> tuple[str, ...]:
    """Every address a peer or the bridge may dial the site at."""
    hosts = [site.sip.host, site.ami.host, *(a.host for a in site.sip_alternates)]
    return tuple(dict.fromkeys(hosts))


def ensure_lab_tls(config: Config, folder: Path) -> dict[str, CertPair]:
    """The lab CA and a certificate for each site of LAB_TLS_SITES, made when missing or
    expiring; returns them by site name (the CA under ``"ca"``)."""
    ca = CertPair(folder / "ca.crt", folder / "ca.key")
    renew = not (_fresh(ca.cert) and ca.key.exists())
    if renew:
        ca = make_ca(folder)
    out = {"ca": ca}
    for site in config.sites:
        if site.name not in LAB_TLS_SITES:
            continue
        pair = CertPair(folder / f"{site.name}.crt", folder / f"{site.name}.key")
        if renew or not (_fresh(pair.cert) and pair.key.exists()):
            pair = issue(ca, folder, site.name, site_hosts(site))
        out[site.name] = pair
    return out


def lab_tls_yaml(
    config_file: Path,
    certs: dict[str, CertPair],
    install_dirs: dict[str, str],
    text: str | None = None,
) -> str:
    """The lab's YAML with TLS on for the sites in ``certs``: each its `tls` files, its AMI
    link over TLS, and its intersite trunks to another of them over TLS (the peer's port
    5061) with SRTP. Relative secret files are made absolute: the result lives elsewhere.
    ``text``: the YAML to read instead of the file's (a test's variant of it)."""
    if text is None:
        text = config_file.read_text(encoding="utf-8")
    data = yaml.safe_load(text)
    _absolute_files(data, config_file.parent)
    sites = data["sites"]
    for name, pair in certs.items():
        if name == "ca" or name not in sites:
            continue
        site = sites[name]
        site["tls"] = {
            "cert": str(pair.cert),
            "key": str(pair.key),
            "ca": str(certs["ca"].cert),
            "install_dir": install_dirs[name],
        }
        site["ami"] = {**site["ami"], "tls": True}
    for trunk in (data.get("trunks") or {}).values():
        peer = trunk.get("peer")
        if trunk.get("kind") == "intersite" and trunk["site"] in certs and peer in certs:
            host = str(sites[peer]["sip"]).rsplit(":", 1)[0]
            trunk["tls"] = True
            trunk["remote"] = f"{host}:{DEFAULT_SIP_TLS_PORT}"
    header = (
        f"# GENERATED by ccbridge.lab.tls from {config_file}: TLS on between "
        f"{', '.join(n for n in certs if n != 'ca')}.\n"
    )
    return header + yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _absolute_files(node: object, base: Path) -> None:
    if isinstance(node, dict):
        if set(node) <= {"env", "file"} and isinstance(node.get("file"), str):
            f = Path(node["file"])
            node["file"] = str(f if f.is_absolute() else (base / f).resolve())
        for value in node.values():
            _absolute_files(value, base)
    elif isinstance(node, list):
        for value in node:
            _absolute_files(value, base)


def enable_lab_tls(
    config: Config, lab_dir: Path | None = None, *, text: str | None = None, at: Path | None = None
) -> Config:
    """The lab config with TLS on for LAB_TLS_SITES, read from a YAML file written beside
    the certificates (so `ccbridge run` on ``config.source`` runs with TLS too); the
    certificates are made when needed and the lab installs them in each site's etc/keys.
    ``text`` and ``at``: YAML text to use instead of ``config.source``'s, and the file it
    stands for (its relative paths are taken from there)."""
    lab = Lab(config, lab_dir)
    folder = lab.run_dir / "tls"
    folder.mkdir(parents=True, exist_ok=True)
    # Test sessions of several checkouts may share one lab folder: one makes the CA.
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        certs = ensure_lab_tls(config, folder)
        install = {s.name: lab.etc_inside(s) + "/keys" for s in config.sites if s.name in certs}
        text = lab_tls_yaml(at or Path(config.source), certs, install, text)
        digest = hashlib.sha256(text.encode()).hexdigest()[:12]
        path = lab.run_dir / f"lab-tls-{digest}.yaml"
        if not path.exists():
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
    return load_config(path)
