"""Play Asterisk for one FastAGI `route` request: the variables the bridge set, parsed.

The partition test and the ceiling bench both ask real bridges for routes this way; it
answers every command ``200 result=0`` (MSet's and SET VARIABLE's reply) and reads until
the bridge closes the session.
"""

from __future__ import annotations

import asyncio

from ccbridge import variables as v


class AgiRouteError(RuntimeError):
    """The session ended without a route, or the bridge sent something unexpected."""


def route_header(host: str, port: int, did: str, caller: str, site: str, callid: str) -> bytes:
    """The request header Asterisk sends for ``AGI(agi://host:port/route?site=...)``."""
    script = f"{v.AGI_ROUTE}?site={site}&lang=&service=&callid={callid}"
    return (
        "agi_network: yes\n"
        f"agi_network_script: {script}\n"
        f"agi_request: agi://{host}:{port}/{script}\n"
        "agi_channel: PJSIP/carrier-in-00000001\n"
        "agi_language: en\n"
        "agi_type: PJSIP\n"
        f"agi_uniqueid: {callid}\n"
        f"agi_callerid: {caller}\n"
        f"agi_dnid: {did}\n"
        "agi_context: ccb-route\n"
        f"agi_extension: {did}\n"
        "agi_priority: 4\n"
        "\n"
    ).encode()


def parse_command(line: str, into: dict[str, str]) -> None:
    """``EXEC MSet "A=1,B=2"`` or ``SET VARIABLE A "1"`` into ``into``."""
    if line.startswith("EXEC MSet "):
        arg = line.removeprefix("EXEC MSet ").strip().strip('"')
        for pair in arg.split(","):
            name, sep, value = pair.partition("=")
            if not sep:
                raise AgiRouteError(f"MSet pair without '=': {line!r}")
            into[name] = value
    elif line.startswith("SET VARIABLE "):
        name, _, value = line.removeprefix("SET VARIABLE ").partition(" ")
        into[name] = value.strip().strip('"')
    else:
        raise AgiRouteError(f"unexpected command {line!r}")


async def ask_route(
    host: str,
    port: int,
    did: str,
    caller: str,
    site: str,
    callid: str = "1.1",
    within: float = 5.0,
) -> dict[str, str]:
    """One route session; the variables set, CCB_ROUTE among them (else AgiRouteError)."""
    got: dict[str, str] = {}
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), within)
    try:
        writer.write(route_header(host, port, did, caller, site, callid))
        while line := await asyncio.wait_for(reader.readline(), within):
            text = line.decode(errors="replace").strip()
            if text:
                parse_command(text, got)
                writer.write(b"200 result=0\n")
    finally:
        writer.close()
    if not got.get(v.ROUTE):
        raise AgiRouteError(f"no {v.ROUTE} in the session's variables: {got}")
    return got
