"""Settings from the environment (docs/settings.md).

An invalid value stops the start with one line naming the variable and the
problem: :func:`load_settings` raises :class:`SettingsError` carrying it.

Each field names its variable (``validation_alias``) and is read from the
environment as text, then validated by pydantic as for any model (defaults
too). Settings are scalars; a list is one comma-separated variable checked by
a validator (see ``ANSFLOW_ADMINS``). A plain ``BaseModel`` fed the matching
variables, not pydantic-settings: the same validation, without importing its
sources machinery at every start of the command line.
"""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
)


class SettingsError(Exception):
    """A setting is present but invalid; ``str()`` is one line fit to print."""


def _env(name: str) -> AliasChoices:
    return AliasChoices(name)


class Settings(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=False, validate_default=True)

    database_url: str = Field("sqlite://ansflow.db", validation_alias=_env("ANSFLOW_DATABASE_URL"))
    pipelines_dir: Path = Field(Path("./pipelines"), validation_alias=_env("ANSFLOW_PIPELINES_DIR"))
    host: str = Field("127.0.0.1", validation_alias=_env("ANSFLOW_HOST"))
    port: int = Field(3000, ge=0, le=65535, validation_alias=_env("ANSFLOW_PORT"))
    slack_bot_token: SecretStr | None = Field(None, validation_alias=_env("SLACK_BOT_TOKEN"))
    slack_signing_secret: SecretStr | None = Field(
        None, validation_alias=_env("SLACK_SIGNING_SECRET")
    )
    slack_app_token: SecretStr | None = Field(None, validation_alias=_env("SLACK_APP_TOKEN"))
    slack_api_url: str | None = Field(None, validation_alias=_env("SLACK_API_URL"))
    jwt_secret: SecretStr | None = Field(None, validation_alias=_env("ANSFLOW_JWT_SECRET"))
    jenkins_url: str | None = Field(None, validation_alias=_env("JENKINS_URL"))
    jenkins_user: str | None = Field(None, validation_alias=_env("JENKINS_USER"))
    jenkins_api_token: SecretStr | None = Field(None, validation_alias=_env("JENKINS_API_TOKEN"))
    poll_interval: float = Field(5.0, gt=0, le=3600, validation_alias=_env("ANSFLOW_POLL_INTERVAL"))
    jenkins_hook_secret: SecretStr | None = Field(
        None, validation_alias=_env("ANSFLOW_JENKINS_HOOK_SECRET")
    )
    admins_raw: str = Field("", validation_alias=_env("ANSFLOW_ADMINS"))
    # -- several replicas --
    lease_seconds: float = Field(
        15.0, ge=1, le=3600, validation_alias=_env("ANSFLOW_LEASE_SECONDS")
    )
    drain_seconds: float = Field(
        30.0, ge=0, le=86400, validation_alias=_env("ANSFLOW_DRAIN_SECONDS")
    )
    # ---- schedules (issue 12) ----
    schedule_grace: float = Field(
        300.0, ge=0, le=366 * 86400, validation_alias=_env("ANSFLOW_SCHEDULE_GRACE")
    )
    # -- per-run workspaces: where each run's local steps work, and how long they stay --
    workspaces_dir: Path = Field(
        Path("./workspaces"), validation_alias=_env("ANSFLOW_WORKSPACES_DIR")
    )
    workspaces_keep: float = Field(
        86400.0, ge=0, le=10 * 365 * 86400, validation_alias=_env("ANSFLOW_WORKSPACES_KEEP")
    )

    @field_validator("database_url")
    @classmethod
    def _check_db_url(cls, value: str) -> str:
        if not value.startswith(("sqlite://", "postgres://", "postgresql://", "asyncpg://")):
            raise ValueError("must start with sqlite:// or postgres://")
        return value

    @field_validator("slack_api_url", "jenkins_url")
    @classmethod
    def _check_http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("slack_app_token")
    @classmethod
    def _check_app_token(cls, value: SecretStr | None) -> SecretStr | None:
        if (
            value is not None
            and value.get_secret_value()
            and not value.get_secret_value().startswith("xapp-")
        ):
            raise ValueError("must be an app-level token starting with xapp-")
        return value

    @field_validator("admins_raw")
    @classmethod
    def _check_admins(cls, value: str) -> str:
        for item in _split_csv(value):
            if not item.replace("_", "").isalnum():
                raise ValueError(f"{item!r} is not a Slack user id")
        return value

    @property
    def admins(self) -> frozenset[str]:
        return frozenset(_split_csv(self.admins_raw))

    @property
    def slack_enabled(self) -> bool:
        return bool(self.slack_bot_token and self.slack_signing_secret) or bool(
            self.slack_bot_token and self.slack_app_token
        )

    @property
    def on_postgres(self) -> bool:
        return self.database_url.startswith(("postgres://", "postgresql://", "asyncpg://"))

    @property
    def jenkins_configured(self) -> bool:
        return bool(self.jenkins_url)

    def secret_values(self) -> list[str]:
        """Every secret this service holds, for masking step output."""
        secrets = [
            self.slack_bot_token,
            self.slack_signing_secret,
            self.slack_app_token,
            self.jwt_secret,
            self.jenkins_api_token,
            self.jenkins_hook_secret,
        ]
        values = [s.get_secret_value() for s in secrets if s is not None]
        password = _db_password(self.database_url)
        if password:
            values.append(password)
        return [v for v in values if v]


def _split_csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _db_password(url: str) -> str | None:
    from urllib.parse import unquote, urlsplit

    try:
        password = urlsplit(url).password
    except ValueError:
        return None
    return unquote(password) if password else None


_ALIASES = {
    name: (
        field.validation_alias.choices[0]
        if isinstance(field.validation_alias, AliasChoices)
        else name
    )
    for name, field in Settings.model_fields.items()
}


def load_settings(env: dict[str, str] | None = None) -> Settings:
    """Read settings from ``env`` (default: the process environment)."""
    source = os.environ if env is None else env
    names = set(_ALIASES.values())
    try:
        return Settings.model_validate({k: v for k, v in source.items() if k in names})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = first["loc"][0] if first["loc"] else ""
        variable = _ALIASES.get(str(loc), str(loc))
        message = first["msg"].removeprefix("Value error, ")
        raise SettingsError(f"invalid setting {variable}: {message}") from None
