"""``sovereign audit | keys | identities | caps``: governance from the command line, acting as the
local admin (whoever can run the CLI owns the home directory and its database)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.table import Table

from sovereign.cli.common import console, err_console, friendly_errors, open_services
from sovereign.governance.audit import AuditLog
from sovereign.governance.keys import Scopes
from sovereign.governance.spend import SpendGuard
from sovereign.governance.visibility import VisibilityStore

__all__ = ["audit_app", "caps_app", "identities_app", "keys_app"]

audit_app = typer.Typer(help="The hash-chained audit log: verify it (and its anchors), anchor it, export it, read it.",
                        no_args_is_help=True)
keys_app = typer.Typer(help="API keys: create (secret shown once), list, revoke.", no_args_is_help=True)
identities_app = typer.Typer(help="Humans and agents (every agent has a human owner).", no_args_is_help=True)
caps_app = typer.Typer(help="Hard spend caps per key, agent, owner and day, in USD and tokens.",
                       no_args_is_help=True)

ACTOR = "cli:local-admin"


@contextmanager
def _governance() -> Iterator[tuple]:
    """Services plus the governance stores, audited, closed afterwards."""
    services = open_services()
    try:
        audit = getattr(services, "audit", None) or AuditLog(services.db)
        if services.keys.audit is None:
            services.keys.audit = audit
        services.keys.ensure_admin()
        spend = getattr(services, "spend", None) or SpendGuard(services.db, audit=audit)
        visibility = getattr(services, "visibility", None) or VisibilityStore(services.db, audit=audit)
        yield services, audit, spend, visibility
    finally:
        services.close()


def _csv(value: str | None) -> list[str] | None:
    return [item.strip() for item in value.split(",") if item.strip()] if value else None


# --- audit -------------------------------------------------------------------------------


@audit_app.command("verify")
@friendly_errors
def audit_verify() -> None:
    """Check the whole chain and that it agrees with every signed anchor kept outside the
    database; names the first edited, deleted, inserted, reordered or rewritten entry."""
    with _governance() as (_, audit, _spend, _vis):
        verdict = audit.verify()
    if verdict.ok:
        anchored = (f", agrees with {verdict.anchors} anchor(s), anchored up to #{verdict.anchored_seq}"
                    if verdict.anchors is not None else " (no anchors: [audit] anchor = false)")
        console.print(f"[bold green]ok[/]: {verdict.entries} entries, chain intact{anchored} "
                      f"(head {verdict.head_hash[:16]})")
        return
    where = f"first bad entry is #{verdict.first_bad_seq}: " if verdict.first_bad_seq is not None else ""
    err_console.print(f"[bold red]TAMPERED[/]: {where}{verdict.reason} ({verdict.entries} entries in the chain)")
    raise typer.Exit(2)


@audit_app.command("anchor")
@friendly_errors
def audit_anchor(show_key: bool = typer.Option(False, "--show-key", help="also print the public key")) -> None:
    """Anchor the chain's head now and print the anchor: keep a copy (and the public key)
    somewhere the database's writers cannot reach."""
    with _governance() as (_, audit, _spend, _vis):
        if audit.anchor is None:
            err_console.print("anchors are off ([audit] anchor = false)")
            raise typer.Exit(1)
        latest = audit.anchor.checkpoint(audit)
        public = audit.anchor.public_key_pem if show_key else None
    if latest is None:
        err_console.print("[bold red]not anchored[/]: the chain or the anchor files do not check out; "
                          "run `sovereign audit verify`")
        raise typer.Exit(2)
    console.print(f"anchored entry #{latest.seq} (head {latest.head}) at {latest.ts}, key {latest.key}")
    console.print(latest.line(), soft_wrap=True, highlight=False)
    if public:
        console.print(public, highlight=False)


@audit_app.command("export")
@friendly_errors
def audit_export(path: Path = typer.Argument(..., help="JSONL file to write")) -> None:
    """Write every entry (already redacted) as one JSON object a line."""
    with _governance() as (_, audit, _spend, _vis):
        count = audit.export(path)
    console.print(f"wrote {count} entries to {path}")


@audit_app.command("tail")
@friendly_errors
def audit_tail(limit: int = typer.Option(20, help="how many entries"),
               kind: str = typer.Option(None, help="only this kind (or prefix, e.g. 'spend')")) -> None:
    """Show the latest entries."""
    with _governance() as (_, audit, _spend, _vis):
        entries = audit.entries(kind=kind)[-limit:] if kind else audit.tail(limit)
    table = Table()
    for column in ("seq", "ts", "kind", "actor", "data"):
        table.add_column(column)
    for e in entries:
        table.add_row(str(e.seq), e.ts, e.kind, e.actor or "", json.dumps(e.data)[:120])
    console.print(table)


# --- keys --------------------------------------------------------------------------------


@keys_app.command("create")
@friendly_errors
def keys_create(
    identity: str = typer.Option("local-admin", "--identity", help="identity name or id the key belongs to"),
    name: str = typer.Option("default", help="a label for the key"),
    models: str = typer.Option(None, help="comma-separated models (globs allowed); default: all"),
    tools: str = typer.Option(None, help="comma-separated tools; default: all"),
    agents: str = typer.Option(None, help="comma-separated agents; default: all"),
    max_spend: float = typer.Option(None, "--max-spend", help="total USD this key may ever spend"),
    expires: str = typer.Option(None, help="30d, 12h, 15m or an ISO date/time; default: never"),
) -> None:
    """Create a key. The secret is printed once and never stored."""
    scopes = Scopes(models=_csv(models), tools=_csv(tools), agents=_csv(agents), max_spend_usd=max_spend)
    with _governance() as (services, _audit, _spend, _vis):
        key_id, secret = services.keys.create_key(identity, name=name, scopes=scopes, expires_at=expires, actor=ACTOR)
        expires_at = services.keys.key(key_id)["expires_at"]
    console.print(f"key [cyan]{key_id}[/] for [bold]{identity}[/] (expires: {expires_at or 'never'})")
    console.print(f"secret (shown once, keep it): [bold yellow]{secret}[/]")


@keys_app.command("list")
@friendly_errors
def keys_list() -> None:
    """Every key with its identity, scopes, expiry and state (never the secret)."""
    with _governance() as (services, _audit, _spend, _vis):
        rows = services.keys.list_keys()
    table = Table()
    for column in ("id", "identity", "name", "prefix", "scopes", "expires", "state"):
        table.add_column(column)
    for r in rows:
        scopes = {k: v for k, v in Scopes.from_json(r["scopes"]).to_dict().items() if v is not None}
        table.add_row(r["id"], r["identity"], r["name"], r["prefix"] + "…", json.dumps(scopes) if scopes else "all",
                      r["expires_at"] or "never", "revoked" if r["revoked_at"] else "active")
    console.print(table)


@keys_app.command("revoke")
@friendly_errors
def keys_revoke(key_id: str = typer.Argument(..., help="the key id (key_...)")) -> None:
    """Revoke a key; the next request with it is refused."""
    with _governance() as (services, _audit, _spend, _vis):
        services.keys.revoke(key_id, actor=ACTOR)
    console.print(f"revoked {key_id}")


# --- identities --------------------------------------------------------------------------


@identities_app.command("add")
@friendly_errors
def identities_add(
    name: str = typer.Argument(...),
    kind: str = typer.Option("human", help="human or agent"),
    role: str = typer.Option("operator", help="admin, operator or viewer"),
    owner: str = typer.Option(None, help="the human owner (required for an agent)"),
    public: bool = typer.Option(False, "--public", help="a public agent sees only what its owner exposes"),
) -> None:
    """Add a human or an agent."""
    with _governance() as (services, _audit, _spend, _vis):
        identity_id = services.keys.create_identity(name, kind=kind, role=role, owner=owner,  # type: ignore[arg-type]
                                                    public=public, actor=ACTOR)
    console.print(f"added {kind} [bold]{name}[/] ({identity_id}, role {role}{', public' if public else ''})")


@identities_app.command("list")
@friendly_errors
def identities_list() -> None:
    with _governance() as (services, _audit, _spend, _vis):
        rows = services.keys.list_identities()
    table = Table()
    for column in ("id", "name", "kind", "role", "owner", "public"):
        table.add_column(column)
    for r in rows:
        table.add_row(r["id"], r["name"], r["kind"], r["role"], r["owner"] or "", "yes" if r["public"] else "")
    console.print(table)


@identities_app.command("expose")
@friendly_errors
def identities_expose(
    agent: str = typer.Argument(..., help="the agent"),
    kind: str = typer.Argument(..., help="memory, kb, workspace or tool"),
    resource: str = typer.Argument(..., help="the resource name, or '*' for all of that kind"),
    remove: bool = typer.Option(False, "--remove", help="withdraw the exposure instead"),
) -> None:
    """Expose a resource to a (public) agent, or withdraw it."""
    with _governance() as (_services, _audit, _spend, visibility):
        if remove:
            visibility.unexpose(agent, kind, resource, actor=ACTOR)  # type: ignore[arg-type]
        else:
            visibility.expose(agent, kind, resource, actor=ACTOR)  # type: ignore[arg-type]
    console.print(f"{'withdrew' if remove else 'exposed'} {kind} '{resource}' {'from' if remove else 'to'} {agent}")


# --- caps --------------------------------------------------------------------------------


@caps_app.command("set")
@friendly_errors
def caps_set(
    scope: str = typer.Argument(..., help="key, agent, owner or global"),
    subject: str = typer.Argument(None, help="key id, agent or owner name (none for global)"),
    period: str = typer.Option("day", help="day or total"),
    usd: float = typer.Option(None, "--usd", help="money cap in USD"),
    tokens: int = typer.Option(None, "--tokens", help="token cap"),
) -> None:
    """Set a hard cap (giving neither --usd nor --tokens removes it)."""
    with _governance() as (services, _audit, spend, _vis):
        if scope in ("agent", "owner") and subject:
            subject = services.keys.identity(subject)["id"]
        cap = spend.set_cap(scope, subject, period, max_usd=usd, max_tokens=tokens, actor=ACTOR)  # type: ignore[arg-type]
    limits = " and ".join(x for x in (f"${usd:g}" if usd is not None else "", f"{tokens} tokens" if tokens is not None
                                      else "") if x) or "removed"
    console.print(f"{cap.label()}: {limits}")


@caps_app.command("list")
@friendly_errors
def caps_list() -> None:
    """Every cap with what has been spent against it and what remains."""
    with _governance() as (services, _audit, spend, _vis):
        names = {r["id"]: r["name"] for r in services.keys.list_identities()}
        rows = []
        for cap in spend.caps():
            subjects = {"key_id": cap.subject if cap.scope == "key" else None,
                        "owner_id": cap.subject if cap.scope == "owner" else None,
                        "agent_id": cap.subject if cap.scope == "agent" else None}
            status = next((c for c in spend.status(**subjects).caps if c.cap == cap), None)
            rows.append((cap, status))
    table = Table()
    for column in ("scope", "subject", "period", "max usd", "spent usd", "max tokens", "used tokens"):
        table.add_column(column)
    for cap, status in rows:
        table.add_row(cap.scope, names.get(cap.subject, cap.subject), cap.period,
                      "" if cap.max_usd is None else f"{cap.max_usd:g}",
                      "" if status is None else f"{status.spent_usd + status.reserved_usd:.6g}",
                      "" if cap.max_tokens is None else str(cap.max_tokens),
                      "" if status is None else str(status.spent_tokens + status.reserved_tokens))
    console.print(table)
