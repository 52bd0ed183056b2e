"""The `phivault` command line: one Typer app over the commands of `cli.services`, `cli.tokens`,
`cli.documents`, `cli.tenants`, `cli.audit` and `cli.users`."""

from __future__ import annotations

import typer

from cli import audit, documents, keys, services, tenants, tokens, users
from core.db import UnsafeDatabaseRole
from core.settings import SettingsError
from tenants.service import TenantUnavailable

app = typer.Typer(
    help="PHIVault: multi-tenant document vault with semantic search.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
for command in (
    services.migrate,
    services.api,
    services.worker,
    services.beat,
    services.up,
    tokens.token,
    documents.ingest,
    documents.search,
    documents.reembed,
):
    app.command()(command)
app.add_typer(tenants.app, name="tenant")
app.add_typer(audit.app, name="audit")
app.add_typer(keys.app, name="keys")
app.add_typer(users.app, name="user")


def main() -> None:
    """Console entry point: configuration and role errors end with a clear message, not a traceback."""
    try:
        app()
    except (SettingsError, UnsafeDatabaseRole, TenantUnavailable) as exc:
        typer.echo(f"phivault: {exc}", err=True)
        raise SystemExit(2) from exc


if __name__ == "__main__":
    main()
