"""The README says what the program does: every setting is in its configuration table, and its examples
show what the service answers (`readme_answer`, used by the tests that run those commands)."""

from __future__ import annotations

from pathlib import Path

from pydantic import AliasChoices

from core.settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_answer(command: str) -> str:
    """The answer the README shows for `command`: the `# ...` line right below it in an example block."""
    lines = README.read_text().splitlines()
    answer = lines[lines.index(command) + 1]
    assert answer.startswith("# "), f"no answer below {command!r} in the README"
    return answer.removeprefix("# ")


def configuration_table() -> str:
    text = README.read_text()
    return text[text.index("## Configuration") : text.index("## A short tour")]


def variables(name: str, alias: object) -> list[str]:
    """The environment variables that set the field `name` (any one of them may be documented)."""
    if isinstance(alias, str):
        return [alias]
    if isinstance(alias, AliasChoices):
        return [choice for choice in alias.choices if isinstance(choice, str) and choice.isupper()]
    return [f"PHIVAULT_{name.upper()}"]


def test_every_setting_is_in_the_configuration_table() -> None:
    table = configuration_table()
    missing = [
        name
        for name, field in Settings.model_fields.items()
        if not any(f"`{variable}`" in table for variable in variables(name, field.validation_alias))
    ]
    assert missing == []
