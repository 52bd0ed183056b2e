"""The rate-limit dependency for upload and search (the limiter itself is `api.rate_limiter`)."""

# No `from __future__ import annotations`: FastAPI must evaluate the dependency's annotation,
# which refers to a closure variable.
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request

from api.context import TenantScope, route_of
from api.rate_limiter import Operation, RateLimited
from audit.service import record_denial


def rate_limited(
    operation: Operation, scoped: Callable[[Request], Awaitable[TenantScope]]
) -> Callable[[TenantScope], Awaitable[TenantScope]]:
    """Wrap a `tenant_scope(...)` dependency: after authentication, before the body is read.

    A refusal is audited as `access.denied` (reason `rate_limited`), like the other denials.
    """

    async def dependency(scope: Annotated[TenantScope, Depends(scoped)]) -> TenantScope:
        limiter = scope.state.rate_limits
        if limiter is None:
            return scope
        try:
            await limiter.check(operation, str(scope.tenant_id), scope.principal.subject)
        except RateLimited:
            await record_denial(
                scope.state.database,
                scope.actor,
                scope.tenant_id,
                "access.denied",
                "rate_limited",
                route=route_of(scope.request),
            )
            raise
        return scope

    return dependency
