"""template.json, .railway/railway.py and railway/*.json describe one deployment, and it starts in production."""

from __future__ import annotations

import base64
import copy
import importlib.util
import json
import os
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from core.keys import decode_master_key
from core.settings import Settings
from tests.deploy.template import (
    APP_SERVICES,
    ROOT,
    load_template,
    pre_deploy_command,
    resolve_variables,
    start_command,
)

SCHEMA_PATH = ROOT / "docs" / "template.schema.json"
IAC_PATH = ROOT / ".railway" / "railway.py"
SHARED_SECRETS = {
    "PHIVAULT_JWT_SECRET": 64,
    "PHIVAULT_APP_DB_PASSWORD": 32,
    "PHIVAULT_METRICS_TOKEN": 48,
    "PHIVAULT_MASTER_KEY": 44,
}
RAILWAY_REFERENCES = {
    "postgres": {"DATABASE_URL": "postgresql://postgres:pw@postgres.railway.internal:5432/railway"},
    "redis": {"REDIS_URL": "redis://default:pw@redis.railway.internal:6379"},
    "bucket": {
        "ENDPOINT": "https://storage.railway.app",
        "BUCKET": "phivault-objects-jdhhd8oe18xi",
        "ACCESS_KEY_ID": "tid_example",
        "SECRET_ACCESS_KEY": "tsec_example",
        "REGION": "auto",
    },
}


def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _commands(value: str | list[str] | None) -> list[list[str]]:
    """A Railway command field (a string, or a list of strings) as split commands."""
    if value is None:
        return []
    return [shlex.split(item) for item in ([value] if isinstance(value, str) else value)]


def test_template_matches_its_schema() -> None:
    _validator().validate(load_template())


def _misspelt_start_command(template: dict[str, Any]) -> None:
    deploy = template["services"]["api"]["deploy"]
    deploy["startComand"] = deploy.pop("startCommand")


def _service_without_deploy(template: dict[str, Any]) -> None:
    del template["services"]["worker"]["deploy"]


def _unknown_builder(template: dict[str, Any]) -> None:
    template["services"]["beat"]["build"]["builder"] = "NIXPACKS"


def _number_as_variable(template: dict[str, Any]) -> None:
    template["services"]["worker"]["variables"]["PHIVAULT_WORKER_METRICS_PORT"] = 9100


def _missing_service(template: dict[str, Any]) -> None:
    del template["services"]["bucket"]


@pytest.mark.parametrize(
    "breakage",
    [_misspelt_start_command, _service_without_deploy, _unknown_builder, _number_as_variable, _missing_service],
)
def test_schema_rejects_a_broken_template(breakage: Any) -> None:
    broken = copy.deepcopy(load_template())
    breakage(broken)
    assert list(_validator().iter_errors(broken))


def test_template_services_commands_and_replicas() -> None:
    template = load_template()
    assert set(template["services"]) == {*APP_SERVICES, "postgres", "redis", "bucket"}
    for service in APP_SERVICES:
        assert start_command(template, service) == ["phivault", service]
        assert template["services"][service]["build"] == {"builder": "DOCKERFILE", "dockerfilePath": "Dockerfile"}
    assert pre_deploy_command(template, "api") == ["phivault", "migrate"]
    assert pre_deploy_command(template, "worker") is None
    assert template["services"]["api"]["deploy"]["healthcheckPath"] == "/readyz"
    assert template["services"]["beat"]["deploy"]["numReplicas"] == 1
    assert template["services"]["postgres"]["image"] == "pgvector/pgvector:pg17"
    assert template["services"]["postgres"]["volume"] == {"mountPath": "/var/lib/postgresql/data"}
    for service in APP_SERVICES:
        deploy = template["services"][service]["deploy"]
        variables = template["services"][service]["variables"]
        assert variables["RAILWAY_DEPLOYMENT_DRAINING_SECONDS"] == str(deploy["drainingSeconds"])


def test_secrets_are_defined_once_and_shared() -> None:
    template = load_template()
    assert set(template["sharedVariables"]) == set(SHARED_SECRETS)
    for service in APP_SERVICES:
        variables = template["services"][service]["variables"]
        for name in SHARED_SECRETS:
            assert variables[name] == f"${{{{shared.{name}}}}}"


def _iac_graph() -> dict[str, Any]:
    """.railway/railway.py evaluated as the Railway CLI does: its definition called with a context."""
    from railway_sdk import create_railway_context  # type: ignore[import-untyped]

    spec = importlib.util.spec_from_file_location("phivault_railway_iac", IAC_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    graph: dict[str, Any] = module.main(create_railway_context(environment="production")).to_graph()
    return graph


PRESERVED = "<preserve()>"


def _iac_variable(node: dict[str, Any]) -> str:
    """An SDK variable node written the way template.json writes it; `preserve()` as `PRESERVED`."""
    if node["type"] == "literal":
        value: str = node["value"]
        return value
    if node["type"] == "reference":
        return f"${{{{{node['resource'].split('.', 1)[1]}.{node['output']}}}}}"
    if node["type"] == "preserve":
        return PRESERVED
    assert node["type"] == "sharedReference", node
    return f"${{{{shared.{node['name']}}}}}"


def _as_iac_writes_it(variables: dict[str, str]) -> dict[str, str]:
    """template.json's variables with every generated one (`${{secret(...)}}`) as IaC must write it: preserved.

    Template functions run only when a template is deployed; IaC keeps the value that deployment generated.
    """
    return {name: PRESERVED if "${{secret(" in value else value for name, value in variables.items()}


def test_railway_iac_describes_the_same_project() -> None:
    template = load_template()
    resources = {item["name"]: item for item in _iac_graph()["resources"] if item["type"] != "volume"}
    assert set(resources) == set(template["services"])
    for service in APP_SERVICES:
        expected = template["services"][service]
        node = resources[service]
        assert node["build"] == expected["build"]
        deploy = dict(node["deploy"])
        wanted = dict(expected["deploy"])
        assert _commands(deploy.pop("preDeployCommand", None)) == _commands(wanted.pop("preDeployCommand", None))
        assert deploy == wanted
        assert {name: _iac_variable(value) for name, value in node["variables"].items()} == expected["variables"]
    postgres = resources["postgres"]
    assert postgres["source"] == {"type": "image", "image": template["services"]["postgres"]["image"]}
    assert [mount["mountPath"] for mount in postgres["volumeAttachments"].values()] == [
        template["services"]["postgres"]["volume"]["mountPath"]
    ]
    assert {name: _iac_variable(value) for name, value in postgres["variables"].items()} == _as_iac_writes_it(
        template["services"]["postgres"]["variables"]
    )
    assert resources["redis"]["engine"] == "redis"
    assert resources["redis"]["defaultMountPath"] == template["services"]["redis"]["volume"]["mountPath"]
    assert resources["bucket"]["type"] == "bucket"


@pytest.mark.parametrize("service", APP_SERVICES)
def test_config_as_code_agrees_with_the_template(service: str) -> None:
    config = json.loads((ROOT / "railway" / f"{service}.json").read_text())
    expected = load_template()["services"][service]
    assert config["$schema"] == "https://railway.com/railway.schema.json"
    assert set(config) == {"$schema", "build", "deploy"}
    assert config["build"] == expected["build"]
    deploy = dict(config["deploy"])
    wanted = dict(expected["deploy"])
    assert _commands(deploy.pop("preDeployCommand", None)) == _commands(wanted.pop("preDeployCommand", None))
    assert deploy == wanted


def test_resolve_variables_generates_each_shared_secret_once() -> None:
    resolved = resolve_variables(load_template(), RAILWAY_REFERENCES)
    for name, length in SHARED_SECRETS.items():
        values = {resolved[service][name] for service in APP_SERVICES}
        assert len(values) == 1, name
        (value,) = values
        assert len(value) == length
        assert "${{" not in value
    master_key = resolved["api"]["PHIVAULT_MASTER_KEY"]
    assert master_key.endswith("=")
    assert len(base64.b64decode(master_key, validate=True)) == 32
    assert len(decode_master_key(master_key)) == 32
    assert resolved["api"]["DATABASE_URL"] == RAILWAY_REFERENCES["postgres"]["DATABASE_URL"]
    assert resolved["worker"]["PHIVAULT_S3_BUCKET"] == RAILWAY_REFERENCES["bucket"]["BUCKET"]
    assert resolved["worker"]["PHIVAULT_WORKER_METRICS_PORT"] == "9100"
    assert (
        resolve_variables(load_template(), RAILWAY_REFERENCES)["api"]["PHIVAULT_JWT_SECRET"]
        != resolved["api"]["PHIVAULT_JWT_SECRET"]
    )


def test_resolve_variables_names_an_unknown_reference() -> None:
    references = {name: values for name, values in RAILWAY_REFERENCES.items() if name != "redis"}
    with pytest.raises(KeyError, match=r"REDIS_URL.*redis\.REDIS_URL"):
        resolve_variables(load_template(), references)


@pytest.mark.parametrize(
    "value", ["${{secret()}}", "${{secret(32)}}", "${{RAILWAY_PRIVATE_DOMAIN}}:5432", "${{ randomInt() }}"]
)
def test_resolve_variables_refuses_what_it_cannot_resolve(value: str) -> None:
    template = load_template()
    template["services"]["beat"]["variables"]["PHIVAULT_EXTRA"] = value
    with pytest.raises(ValueError, match=r"beat\.PHIVAULT_EXTRA"):
        resolve_variables(template, RAILWAY_REFERENCES)


_ENVIRONMENT = (
    "PORT",
    "DATABASE_URL",
    "REDIS_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "HF_HUB_OFFLINE",
)


@pytest.mark.parametrize("service", APP_SERVICES)
def test_resolved_variables_start_in_production(service: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in [*_ENVIRONMENT, *(name for name in os.environ if name.startswith("PHIVAULT_"))]:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env or data directory of this checkout
    variables = resolve_variables(load_template(), RAILWAY_REFERENCES)[service]
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.is_production
    assert settings.storage == "s3"
    assert settings.effective_s3_encryption == "envelope"
    assert settings.database_url == RAILWAY_REFERENCES["postgres"]["DATABASE_URL"]
    assert settings.s3_endpoint_url == RAILWAY_REFERENCES["bucket"]["ENDPOINT"]
    assert settings.aws_region == "auto"
    assert settings.master_key is not None
    assert len(decode_master_key(settings.master_key.get_secret_value())) == 32
    assert settings.worker_metrics_port == (9100 if service == "worker" else None)
