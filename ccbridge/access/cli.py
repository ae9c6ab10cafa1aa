"""`ccbridge users add|list|disable|enable|token CONFIG ...` and `ccbridge audit
verify|erase CONFIG`: users and the audit chain, from the command line.

Every change a command makes is audited (actor ``cli:<login>``, source ``cli``) in the
same transaction as the change. Exit status: 0 done, 1 the database cannot be reached,
2 refused (a bad role, site or name; a schema not upgraded; a broken audit chain).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncConnection

    from ccbridge.config.model import Config

EXIT_REFUSED = 2
EXIT_UNREACHABLE = 1


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    u = sub.add_parser("users", help="users, service accounts and their API tokens")
    usub = u.add_subparsers(dest="users_action", required=True)
    add = usub.add_parser("add", help="add a user or a service account")
    add.add_argument("config")
    add.add_argument("name")
    add.add_argument("--role", required=True, help="admin, supervisor, agent, viewer, service, …")
    add.add_argument("--site", action="append", default=[], help="a site of a scoped role")
    add.add_argument("--agent", help="the agent 'me' stands for (role agent)")
    add.add_argument("--service", action="store_true", help="a service account (no password)")
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    lst = usub.add_parser("list", help="list users and their tokens")
    lst.add_argument("config")
    for name in ("disable", "enable"):
        d = usub.add_parser(name, help=f"{name} a user (a disabled user's tokens stop working)")
        d.add_argument("config")
        d.add_argument("name")
    tok = usub.add_parser("token", help="make an API token (shown once), or revoke one")
    tok.add_argument("config")
    tok.add_argument("name", nargs="?")
    tok.add_argument("--days", type=float, help="lifetime (default access.token_days)")
    tok.add_argument("--label")
    tok.add_argument("--revoke", metavar="TOKEN_ID", help="revoke the token with this id")
    u.set_defaults(func=cmd_users)

    a = sub.add_parser("audit", help="the audit trail: verify its chain, erase a number")
    asub = a.add_subparsers(dest="audit_action", required=True)
    v = asub.add_parser("verify", help="check that no audit row was edited or deleted")
    v.add_argument("config")
    e = asub.add_parser("erase", help="erase the details of rows that mention a number")
    e.add_argument("config")
    e.add_argument("--number", required=True)
    a.set_defaults(func=cmd_audit)


def _err(line: str) -> None:
    print(line, file=sys.stderr)


def _actor() -> str:
    from ccbridge.access.audit import cli_actor

    return cli_actor()


def cmd_users(args: argparse.Namespace) -> int:
    from ccbridge.cli import _load

    config = _load(args.config)
    password: str | None = None
    if args.users_action == "add" and not args.service and args.role != "service":
        if args.password_stdin:
            password = sys.stdin.readline().rstrip("\n")
        else:
            password = getpass.getpass(f"password for {args.name}: ")
        if len(password) < 8:
            _err("error: a password needs at least 8 characters")
            return EXIT_REFUSED
    return asyncio.run(run_users(config, args, password, print, _err))


def cmd_audit(args: argparse.Namespace) -> int:
    from ccbridge.cli import _load

    config = _load(args.config)
    return asyncio.run(run_audit(config, args, print, _err))


def check_user_args(config: Config, role: str, sites: list[str], agent: str | None) -> str | None:
    """Why `users add` refuses these, or None."""
    roles = config.access.roles
    if role not in roles:
        return f"unknown role {role!r} (roles: {', '.join(sorted(roles))})"
    known = {s.name for s in config.sites}
    for s in sites:
        if s not in known:
            return f"unknown site {s!r} (sites: {', '.join(sorted(known))})"
    if roles[role].scoped and not sites:
        return f"role {role!r} covers sites: name them with --site"
    if any("me" in p.split(".") for p in roles[role].acl) and not agent:
        return f"role {role!r} acts on the user's own agent: name it with --agent"
    return None


async def _with_db(
    config: Config,
    err: Callable[[str], None],
    work: Callable[[AsyncConnection], object],
) -> int:
    from sqlalchemy.exc import DBAPIError

    from ccbridge.store.engine import make_engine, sqlite_path
    from ccbridge.store.migrate import SchemaError, check_schema

    path = sqlite_path(config.store)
    if path is not None and not await asyncio.to_thread(path.exists):
        err(f"error: no database file {path}: run `ccbridge db upgrade CONFIG` first")
        return EXIT_REFUSED
    engine = make_engine(config.store)
    try:
        await check_schema(engine)
        async with engine.begin() as conn:
            result = work(conn)
            code = await result if asyncio.iscoroutine(result) else result
        return int(code) if isinstance(code, int) else 0
    except SchemaError as exc:
        err(f"error: {exc}")
        return EXIT_REFUSED
    except (OSError, TimeoutError, DBAPIError) as exc:
        err(f"error: cannot reach the database: {type(exc).__name__}")
        return EXIT_UNREACHABLE
    finally:
        await engine.dispose()


async def run_users(
    config: Config,
    args: argparse.Namespace,
    password: str | None,
    out: Callable[[str], None],
    err: Callable[[str], None],
) -> int:
    from ccbridge.access.audit import AuditEvent
    from ccbridge.access.passwords import hash_password
    from ccbridge.access.users import (
        UserError,
        add_user,
        issue_token,
        list_users,
        revoke_token,
        set_disabled,
        tokens_of,
    )
    from ccbridge.config.reader import NAME_RE
    from ccbridge.store.audit import append_rows
    from ccbridge.store.records import check_record

    now = datetime.now(UTC)
    actor = _actor()

    async def audit(
        conn: AsyncConnection, action: str, obj: str, details: dict[str, object]
    ) -> None:
        ev = AuditEvent(actor, "cli", action, "ok", obj, details=details, at=now)
        await append_rows(conn, [check_record("audit", ev.values(lambda: now)).values])

    action = args.users_action
    if action == "add":
        sites = list(dict.fromkeys(args.site))
        if not NAME_RE.match(args.name):
            err(f"error: invalid name {args.name!r}: lowercase letters, digits, '-' or '_'")
            return EXIT_REFUSED
        why = check_user_args(config, args.role, sites, args.agent)
        if why is not None:
            err(f"error: {why}")
            return EXIT_REFUSED
        hashed = await hash_password(password) if password is not None else None

        async def work_add(conn: AsyncConnection) -> int:
            try:
                await add_user(
                    conn,
                    args.name,
                    kind="service" if args.service or args.role == "service" else "user",
                    role=args.role,
                    sites=sites,
                    agent=args.agent,
                    password_hash=hashed,
                    now=now,
                )
            except UserError as exc:
                err(f"error: {exc}")
                return EXIT_REFUSED
            await audit(conn, "users.add", f"user:{args.name}", {"role": args.role, "sites": sites})
            out(
                f"user {args.name} added: role {args.role}"
                + (f", sites {', '.join(sites)}" if sites else "")
            )
            return 0

        return await _with_db(config, err, work_add)

    if action == "list":

        async def work_list(conn: AsyncConnection) -> int:
            for u in await list_users(conn):
                state = "disabled" if u.disabled else "active"
                where = ",".join(u.sites) or "-"
                out(f"{u.name}\t{u.kind}\t{u.role}\tsites={where}\tagent={u.agent or '-'}\t{state}")
                for t in await tokens_of(conn, u.name):
                    live = (
                        "revoked"
                        if t["revoked_at"]
                        else ("expired" if t["expires_at"] <= now else "valid")
                    )
                    out(
                        f"  token {t['id']}\t{t['label'] or '-'}\t"
                        f"expires {t['expires_at']:%Y-%m-%dT%H:%MZ}\t{live}"
                    )
            return 0

        return await _with_db(config, err, work_list)

    if action in ("disable", "enable"):

        async def work_flag(conn: AsyncConnection) -> int:
            try:
                await set_disabled(conn, args.name, action == "disable")
            except UserError as exc:
                err(f"error: {exc}")
                return EXIT_REFUSED
            await audit(conn, f"users.{action}", f"user:{args.name}", {})
            out(f"user {args.name} {action}d")
            return 0

        return await _with_db(config, err, work_flag)

    # token
    if args.revoke:

        async def work_revoke(conn: AsyncConnection) -> int:
            try:
                owner = await revoke_token(conn, args.revoke, now)
            except UserError as exc:
                err(f"error: {exc}")
                return EXIT_REFUSED
            await audit(conn, "tokens.revoke", f"token:{args.revoke}", {"user": owner})
            out(f"token {args.revoke} of {owner} revoked")
            return 0

        return await _with_db(config, err, work_revoke)
    if not args.name:
        err("error: name the user the token is for (or --revoke TOKEN_ID)")
        return EXIT_REFUSED
    days = args.days if args.days is not None else config.access.token_days
    if not 0 < days <= 3650:
        err("error: --days must be more than 0 and at most 3650")
        return EXIT_REFUSED

    async def work_token(conn: AsyncConnection) -> int:
        try:
            issued = await issue_token(
                conn, args.name, now=now, lifetime=timedelta(days=days), label=args.label
            )
        except UserError as exc:
            err(f"error: {exc}")
            return EXIT_REFUSED
        await audit(conn, "tokens.issue", f"token:{issued.id}", {"user": args.name})
        # The token itself only here, once: it is stored hashed.
        out(issued.token)
        err(f"token {issued.id} for {args.name}, expires {issued.expires_at:%Y-%m-%dT%H:%MZ}")
        return 0

    return await _with_db(config, err, work_token)


async def run_audit(
    config: Config, args: argparse.Namespace, out: Callable[[str], None], err: Callable[[str], None]
) -> int:
    from ccbridge.access.audit import AuditEvent
    from ccbridge.store.audit import append_rows, erase_details, verify
    from ccbridge.store.records import check_record

    if args.audit_action == "verify":

        async def work_verify(conn: AsyncConnection) -> int:
            result = await verify(conn)
            for p in result.problems:
                err(f"audit: {p}")
            if not result.ok:
                err(f"audit chain BROKEN ({result.rows} rows read)")
                return EXIT_REFUSED
            out(f"audit chain ok: {result.rows} rows")
            return 0

        return await _with_db(config, err, work_verify)

    now = datetime.now(UTC)

    async def work_erase(conn: AsyncConnection) -> int:
        n = await erase_details(conn, args.number, now)
        ev = AuditEvent(_actor(), "cli", "audit.erase", "ok", None, details={"rows": n}, at=now)
        # The number itself is not written into the row that records its erasure.
        await append_rows(conn, [check_record("audit", ev.values(lambda: now)).values])
        out(f"details erased from {n} audit rows; the chain still verifies")
        return 0

    return await _with_db(config, err, work_erase)
