"""`phivault user ...`: a tenant's users from the command line (list, deactivate, reactivate), acting as the
CLI actor and audited as the HTTP endpoints are (`user.listed`, `user.updated`, `user.deactivated`, ...)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Annotated

import typer

from cli.context import TenantOption, app_database, cli_actor, cli_settings, parse_uuid
from core.errors import NotFound
from core.runtime import resolve_services
from tenants.service import acting_session
from users.schemas import UserOut, UserStatus, UserUpdate
from users.service import list_users, update_user

app = typer.Typer(help="Manage a tenant's users.", no_args_is_help=True)

LIST_PAGE_SIZE = 100
UserIdArgument = Annotated[str, typer.Argument(help="The user's id (uuid), as `phivault user list` prints it.")]


@app.command("list")
def user_list(
    tenant: TenantOption,
    status: Annotated[UserStatus | None, typer.Option(help="Only active or deactivated users.")] = None,
) -> None:
    """Print the tenant's users, newest first: id, subject, role and status, tab-separated."""
    settings = cli_settings()
    services = resolve_services(settings, need_redis=False)
    tenant_id = parse_uuid(tenant)

    async def every_page() -> list[UserOut]:
        users: list[UserOut] = []
        cursor = None
        async with app_database(settings, services) as db:
            while True:
                async with acting_session(db, tenant_id, cli_actor()) as tx:
                    page = await list_users(tx, status=status, limit=LIST_PAGE_SIZE, cursor=cursor)
                users.extend(page.items)
                if page.next_cursor is None:
                    return users
                cursor = page.next_cursor

    for user in asyncio.run(every_page()):
        typer.echo(f"{user.id}\t{user.subject}\t{user.role}\t{user.status}")


@app.command("deactivate")
def user_deactivate(tenant: TenantOption, user_id: UserIdArgument) -> None:
    """Deactivate a user: every token of it is refused from its next request on."""
    _set_active(tenant, user_id, active=False)


@app.command("reactivate")
def user_reactivate(tenant: TenantOption, user_id: UserIdArgument) -> None:
    """Let a deactivated user in again."""
    _set_active(tenant, user_id, active=True)


def _set_active(tenant: str, user_id: str, *, active: bool) -> None:
    settings = cli_settings()
    services = resolve_services(settings, need_redis=False)
    tenant_id, target = parse_uuid(tenant), parse_uuid(user_id, "user")

    async def run(target: uuid.UUID) -> UserOut:
        async with app_database(settings, services) as db, acting_session(db, tenant_id, cli_actor()) as tx:
            return UserOut.of(await update_user(tx, target, UserUpdate(active=active)))

    try:
        user = asyncio.run(run(target))
    except NotFound as refused:
        typer.echo(f"phivault: {refused.message}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"{user.id}\t{user.subject}\t{user.role}\t{user.status}")
