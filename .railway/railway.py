"""PHIVault on Railway, as infrastructure as code (railway-sdk): the same project as `template.json`.

`api`, `worker` and `beat` build this repository's Dockerfile; `postgres` runs pgvector/pgvector:pg17 on a volume;
`redis` is Railway's Redis and `bucket` a Railway storage bucket. The four secrets are the environment's shared
variables, referenced as `${{shared.NAME}}`: Railway's IaC references shared variables but does not create them, so
set them once (the template generates them; see docs/DEPLOY.md section 3). Likewise `POSTGRES_PASSWORD` is
`preserve()`d: template functions such as `secret()` run only when a template is deployed, and a password that
changed on every apply would no longer match the database's.
"""

from __future__ import annotations

from typing import Any

from railway_sdk import (  # type: ignore[import-untyped]
    Project,
    RailwayContext,
    Service,
    bucket,
    define_railway,
    image,
    preserve,
    project,
    redis,
    service,
    volume,
)

SHARED_SECRETS = ("PHIVAULT_JWT_SECRET", "PHIVAULT_APP_DB_PASSWORD", "PHIVAULT_METRICS_TOKEN", "PHIVAULT_MASTER_KEY")
DOCKERFILE_BUILD = {"builder": "DOCKERFILE", "dockerfilePath": "Dockerfile"}
RESTART = {"restartPolicyType": "ON_FAILURE", "restartPolicyMaxRetries": 10}


def _app_variables(
    ctx: RailwayContext, db: Service, cache: Service, store: Service, draining_seconds: int
) -> dict[str, Any]:
    return {
        **{name: ctx.shared[name] for name in SHARED_SECRETS},
        "PHIVAULT_ENV": "production",
        "DATABASE_URL": db.env.DATABASE_URL,
        "PHIVAULT_DB_ALLOW_PLAINTEXT": "true",
        "REDIS_URL": cache.env.REDIS_URL,
        "PHIVAULT_STORAGE": "s3",
        "PHIVAULT_S3_ENCRYPTION": "envelope",
        "PHIVAULT_S3_ADDRESSING_STYLE": "virtual",
        "PHIVAULT_S3_ENDPOINT_URL": store.env.ENDPOINT,
        "PHIVAULT_S3_BUCKET": store.env.BUCKET,
        "AWS_ACCESS_KEY_ID": store.env.ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": store.env.SECRET_ACCESS_KEY,
        "PHIVAULT_AWS_REGION": store.env.REGION,
        "PHIVAULT_KEY_PROVIDER": "local",
        "HF_HUB_OFFLINE": "1",
        "RAILWAY_DEPLOYMENT_DRAINING_SECONDS": str(draining_seconds),
    }


@define_railway  # type: ignore[untyped-decorator]
def main(ctx: RailwayContext) -> Project:
    postgres_data = volume("postgres-data")
    db = service(
        "postgres",
        source=image("pgvector/pgvector:pg17"),
        volumeMounts={"/var/lib/postgresql/data": postgres_data},
        variables={
            "POSTGRES_USER": "postgres",
            "POSTGRES_PASSWORD": preserve(),
            "POSTGRES_DB": "railway",
            "PGDATA": "/var/lib/postgresql/data/pgdata",
            "DATABASE_URL": (
                "postgresql://${{POSTGRES_USER}}:${{POSTGRES_PASSWORD}}@${{RAILWAY_PRIVATE_DOMAIN}}:5432/${{POSTGRES_DB}}"
            ),
        },
    )
    cache = redis("redis")
    store = bucket("bucket")
    api = service(
        "api",
        build=DOCKERFILE_BUILD,
        start="phivault api",
        preDeployCommand="phivault migrate",
        healthcheck="/readyz",
        healthcheckTimeout=300,
        replicas=1,
        deploy={**RESTART, "drainingSeconds": 30},
        variables=_app_variables(ctx, db, cache, store, 30),
    )
    worker = service(
        "worker",
        build=DOCKERFILE_BUILD,
        start="phivault worker",
        replicas=1,
        deploy={**RESTART, "drainingSeconds": 120},
        variables={**_app_variables(ctx, db, cache, store, 120), "PHIVAULT_WORKER_METRICS_PORT": "9100"},
    )
    beat = service(
        "beat",
        build=DOCKERFILE_BUILD,
        start="phivault beat",
        replicas=1,  # exactly one scheduler, always
        deploy={**RESTART, "drainingSeconds": 10},
        variables=_app_variables(ctx, db, cache, store, 10),
    )
    return project("phivault", resources=[db, postgres_data, cache, store, api, worker, beat])
