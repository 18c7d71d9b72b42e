"""The SSM parameters the workers read at start: the pairs (created here) and one side's keys
(a SecureString the operator creates; only referenced)."""

from __future__ import annotations

from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_ssm as ssm
from constructs import Construct


class Parameters(Construct):
    """The pairs parameter and a reference to the credentials SecureString.

    CloudFormation cannot create a SecureString, and a key must never sit in a template, so
    the credentials parameter is only referenced by name: the stack grants reading it and
    nothing else. Its value never appears in the template.

    Args:
        scope: The parent construct.
        id: The construct id.
        pairs_name: Name of the pairs parameter.
        pairs_value: Its value (JSON list of `{"src", "dst"}`).
        credentials_name: Name of the operator's SecureString, or None.
        credentials_key_arn: Its customer-managed KMS key, or None for `aws/ssm`.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        pairs_name: str,
        pairs_value: str,
        credentials_name: str | None,
        credentials_key_arn: str | None,
    ) -> None:
        super().__init__(scope, id)
        self.pairs = ssm.StringParameter(
            self,
            "Pairs",
            parameter_name=pairs_name,
            string_value=pairs_value,
            description="Longbow: the bucket pairs to copy (JSON)",
            # An advanced parameter holds 8 KB instead of 4 KB; many pairs may need it.
            tier=ssm.ParameterTier.ADVANCED
            if len(pairs_value.encode()) > 4096
            else ssm.ParameterTier.STANDARD,
        )
        self.credentials: ssm.IStringParameter | None = None
        if credentials_name:
            key = (
                kms.Key.from_key_arn(self, "CredentialsKey", credentials_key_arn)
                if credentials_key_arn
                else None
            )
            self.credentials = ssm.StringParameter.from_secure_string_parameter_attributes(
                self, "Credentials", parameter_name=credentials_name, encryption_key=key
            )

    def grant_read(self, grantee: iam.IGrantable) -> None:
        """Let `grantee` read both parameters (and decrypt the SecureString's own key)."""
        self.pairs.grant_read(grantee)
        if self.credentials is not None:
            self.credentials.grant_read(grantee)
