"""Reading synthesised templates: the variants' record and helpers for intrinsic functions."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk.assertions import Template
from longbow_deploy.settings import DeploySettings


@dataclass(frozen=True)
class Synthesized:
    """One synthesised variant.

    Attributes:
        name: The variant.
        settings: Its settings.
        data: The template, as JSON.
        path: The template file.
        template: The template, for `aws_cdk.assertions`.
    """

    name: str
    settings: DeploySettings
    data: dict[str, Any]
    path: Path
    template: Template

    def resources(self, type_name: str) -> dict[str, dict[str, Any]]:
        """Logical id -> resource, for every resource of one type."""
        return {k: v for k, v in self.data["Resources"].items() if v["Type"] == type_name}

    def statements(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """(policy logical id, statement) for every statement of every IAM policy."""
        for policy_id, policy in self.resources("AWS::IAM::Policy").items():
            for statement in policy["Properties"]["PolicyDocument"]["Statement"]:
                yield policy_id, statement
        for role_id, role in self.resources("AWS::IAM::Role").items():
            for inline in role["Properties"].get("Policies", ()):
                for statement in inline["PolicyDocument"]["Statement"]:
                    yield role_id, statement


def render(value: Any, refs: Callable[[Any], str] | None = None) -> str:
    """A CloudFormation string value (Fn::Join of strings and intrinsics) as text, with every
    intrinsic replaced by `refs(intrinsic)` (default: its JSON)."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "Fn::Join" in value:
        separator, parts = value["Fn::Join"]
        return separator.join(render(p, refs) for p in parts)
    if isinstance(value, dict) and "Fn::Base64" in value:
        return render(value["Fn::Base64"], refs)
    return refs(value) if refs else json.dumps(value, sort_keys=True)
