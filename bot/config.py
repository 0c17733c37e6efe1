"""Settings from environment variables (and an optional `.env` file), validated at start-up."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from croniter import croniter
from pydantic import BaseModel, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from bot.durations import parse_duration
from bot.errors import UsageError

IdList = Annotated[list[str], NoDecode]
Mode = Literal["serve", "socket", "shell", "check-config", "runbook"]


class OncallContact(BaseModel):
    """One row of the emergency contact table; `slack` is a user (U…) or user-group (S…) id to mention."""

    role: str
    contact: str
    escalation: str
    slack: str | None = None


# The runbook's emergency contact table; the addresses are set through ONCALL_CONTACTS.
DEFAULT_ONCALL_CONTACTS = [
    OncallContact(role="On-Call Engineer", contact="PagerDuty", escalation="Immediate"),
    OncallContact(role="Backend Lead", contact="not configured", escalation="5 minutes"),
    OncallContact(role="Security Lead", contact="not configured", escalation="Security issues"),
    OncallContact(role="Database Admin", contact="not configured", escalation="Database issues"),
]


class Settings(BaseSettings):
    """Every setting the bot reads; names match the environment variables in upper case."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", hide_input_in_errors=True)

    slack_bot_token: SecretStr | None = None
    slack_signing_secret: SecretStr | None = None
    slack_app_token: SecretStr | None = None
    slack_api_url: str = "https://slack.com/api/"
    port: int = Field(default=3000, ge=0, le=65535)  # 0 picks a free port

    meridian_api_url: str | None = None
    meridian_frontend_url: str | None = None
    metrics_token: SecretStr | None = None
    database_url: SecretStr | None = None
    ethereum_rpc_url: SecretStr | None = None
    ethereum_backup_rpc_url: SecretStr | None = None

    kube_namespace: str = "meridian"
    kube_deployment: str = "meridian-api"
    kube_secret_name: str = "meridian-secrets"
    kubeconfig: str | None = None

    aws_region: str | None = None
    aws_endpoint_url: str | None = None
    backup_bucket: str | None = None
    backup_prefix: str = "daily/"
    rds_instance_id: str | None = None

    bot_state_url: str = "sqlite:///meridian-bot.sqlite3"
    incident_channel: str | None = None

    viewers: IdList = []
    operators: IdList = []
    approvers: IdList = []
    admins: IdList = []

    approval_ttl: timedelta = timedelta(minutes=15)
    rpo: timedelta = timedelta(hours=1)
    health_poll_interval: timedelta = timedelta(minutes=1)
    backup_verify_schedule: str = "0 4 * * 0"

    pagerduty_routing_key: SecretStr | None = None
    pagerduty_events_url: str = "https://events.pagerduty.com/v2/enqueue"

    log_format: Literal["json", "text"] = "text"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    verify_database_url: SecretStr | None = None
    rds_restore_instance_class: str = "db.t3.medium"
    rds_subnet_group: str | None = None
    rds_security_group_ids: IdList = []
    api_log_level_var: str = "RUST_LOG"

    contract_address: str | None = None
    pauser_key: SecretStr | None = None
    chain_id: int | None = Field(default=None, ge=1)

    oncall_contacts: list[OncallContact] = Field(default_factory=lambda: list(DEFAULT_ONCALL_CONTACTS))
    slack_workspace_url: str | None = None
    api_key_salt_notice: timedelta = timedelta(hours=24)
    rotation_watch: timedelta = timedelta(minutes=3)
    api_database_group_role: str = "meridian_api"

    @field_validator("viewers", "operators", "approvers", "admins", "rds_security_group_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.replace(" ", ",").split(",") if item.strip()]
        return value

    @field_validator("viewers", "operators", "approvers", "admins")
    @classmethod
    def _check_slack_ids(cls, value: list[str]) -> list[str]:
        for item in value:
            if not item[:1] in ("U", "W", "S") or not item.isalnum() or not item.isupper():
                raise ValueError(f"`{item}` is not a Slack user id (U…/W…) or user-group id (S…)")
        return value

    @field_validator("approval_ttl", "rpo", "health_poll_interval", "api_key_salt_notice", "rotation_watch", mode="before")
    @classmethod
    def _parse_duration(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                return parse_duration(value)
            except UsageError as error:
                raise ValueError(error.message) from None
        return value

    @field_validator("approval_ttl", "rpo", "health_poll_interval")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than zero")
        return value

    @field_validator("slack_bot_token", "slack_app_token")
    @classmethod
    def _check_token_kind(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        prefix = "xoxb-" if info.field_name == "slack_bot_token" else "xapp-"
        if value is not None and not value.get_secret_value().startswith(prefix):
            raise ValueError(f"must start with {prefix}")
        return value

    @field_validator("backup_verify_schedule")
    @classmethod
    def _check_cron(cls, value: str) -> str:
        if not croniter.is_valid(value) or len(value.split()) != 5:
            raise ValueError(f"`{value}` is not a five-field cron expression")
        return value

    @field_validator("slack_api_url", "meridian_api_url", "meridian_frontend_url", "aws_endpoint_url", "pagerduty_events_url", "slack_workspace_url")
    @classmethod
    def _check_http_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator("database_url", "verify_database_url")
    @classmethod
    def _check_postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        if urlsplit(value.get_secret_value()).scheme not in ("postgres", "postgresql"):
            raise ValueError("must be a postgresql:// URL")
        return value

    @field_validator("ethereum_rpc_url", "ethereum_backup_rpc_url")
    @classmethod
    def _check_rpc_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        if urlsplit(value.get_secret_value()).scheme not in ("http", "https"):
            raise ValueError("must be an http:// or https:// JSON-RPC URL")
        return value

    @field_validator("bot_state_url")
    @classmethod
    def _check_state_url(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in ("sqlite", "postgres", "postgresql"):
            raise ValueError("must be sqlite:///PATH or postgresql://USER@HOST/DATABASE")
        return value

    @field_validator("api_key_salt_notice", "rotation_watch")
    @classmethod
    def _not_negative(cls, value: timedelta) -> timedelta:
        if value < timedelta(0):
            raise ValueError("must not be negative")
        return value

    @field_validator("contract_address")
    @classmethod
    def _check_contract_address(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if len(value) != 42 or not value.startswith("0x") or any(c not in "0123456789abcdefABCDEF" for c in value[2:]):
            raise ValueError("must be a 0x-prefixed address of 40 hexadecimal digits")
        return value

    @field_validator("api_database_group_role")
    @classmethod
    def _check_role_name(cls, value: str) -> str:
        if not value or len(value) > 40 or not all(c.islower() or c.isdigit() or c == "_" for c in value) or value[0].isdigit():
            raise ValueError("must be a PostgreSQL role name of lower-case letters, digits and _ (at most 40 characters)")
        return value

    @property
    def slack_api_base_url(self) -> str:
        return self.slack_api_url if self.slack_api_url.endswith("/") else self.slack_api_url + "/"


_FIXES = {
    "SLACK_BOT_TOKEN": "set it to the Bot User OAuth Token (xoxb-...) from the app's OAuth & Permissions page",
    "SLACK_SIGNING_SECRET": "set it to the Signing Secret from the app's Basic Information page",
    "SLACK_APP_TOKEN": "set it to an app-level token (xapp-...) with the connections:write scope",
    "VIEWERS": "list Slack user ids (U...) or user-group ids (S...), separated by commas",
    "OPERATORS": "list Slack user ids (U...) or user-group ids (S...), separated by commas",
    "APPROVERS": "list Slack user ids (U...) or user-group ids (S...), separated by commas",
    "ADMINS": "list Slack user ids (U...) or user-group ids (S...), separated by commas",
    "APPROVAL_TTL": "write a duration such as 15m",
    "RPO": "write a duration such as 1h",
    "HEALTH_POLL_INTERVAL": "write a duration such as 60s",
    "BACKUP_VERIFY_SCHEDULE": "write a cron expression such as `0 4 * * 0` (Sundays 04:00 UTC)",
    "BOT_STATE_URL": "use sqlite:///path/to/state.sqlite3 or postgresql://user@host/db",
    "DATABASE_URL": "use postgresql://user:password@host:5432/dbname",
    "LOG_FORMAT": "use json or text",
    "LOG_LEVEL": "use DEBUG, INFO, WARNING or ERROR",
    "ONCALL_CONTACTS": 'write a JSON list such as [{"role": "Security Lead", "contact": "security@example.com", "escalation": "Security issues", "slack": "S0SECURITY"}]',
    "API_KEY_SALT_NOTICE": "write a duration such as 24h",
    "ROTATION_WATCH": "write a duration such as 3m",
    "API_DATABASE_GROUP_ROLE": "name the NOLOGIN role that holds the API's privileges, such as meridian_api",
    "CONTRACT_ADDRESS": "write the contract's address, such as 0x5FbDB2315678afecb367f032d93F642f64180aa3",
}

_REQUIRED_BY_MODE: dict[str, tuple[str, ...]] = {
    "serve": ("slack_bot_token", "slack_signing_secret"),
    "socket": ("slack_bot_token", "slack_app_token"),
    "check-config": ("slack_bot_token",),
}


class SettingsError(Exception):
    """Settings are missing or invalid; `lines` holds one line per variable, each with its fix."""

    def __init__(self, lines: list[str]) -> None:
        super().__init__("\n".join(lines))
        self.lines = lines


def _line(variable: str, problem: str) -> str:
    fix = _FIXES.get(variable)
    return f"{variable} {problem}" + (f": {fix}." if fix else ".")


def load_settings(mode: Mode, **overrides: Any) -> Settings:
    """Read and validate the settings that `mode` needs, or raise SettingsError."""
    try:
        settings = Settings(**overrides)
    except ValidationError as error:
        lines = []
        for problem in error.errors():
            variable = str(problem["loc"][0]).upper() if problem["loc"] else "settings"
            message = problem["msg"].removeprefix("Value error, ").rstrip(".")
            lines.append(_line(variable, f"is invalid ({message})"))
        raise SettingsError(lines) from None

    missing = [name for name in _REQUIRED_BY_MODE.get(mode, ()) if getattr(settings, name) is None]
    if missing:
        raise SettingsError([_line(name.upper(), f"is missing (needed by `meridian-bot {mode}`)") for name in missing])
    return settings
