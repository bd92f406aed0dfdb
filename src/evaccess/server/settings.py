"""Server settings: environment variables with the ``EVACCESS_`` prefix, checked at start-up
(fail fast: a wrong setting stops the server with one line, before anything listens)."""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from evaccess.domain.errors import ConfigurationError

SUPPORTED_DATABASES = ("sqlite+aiosqlite", "postgresql+asyncpg")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EVACCESS_", extra="ignore", frozen=True)

    data_dir: Path = Field(default=Path("var"), description="Database file, keys, logs.")
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; default: SQLite file DATA_DIR/evaccess.db. "
        "PostgreSQL: postgresql+asyncpg://user@host/db.",
    )
    keys_dir: Path | None = Field(default=None, description="Key files; default DATA_DIR/keys.")
    keys: SecretStr | None = Field(
        default=None,
        description="Keys as JSON instead of key files (deployments): "
        '{"vault": {"1": "<base64 32 bytes>"}, "audit": "<base64>", "keypad_pepper": "<base64>"}.',
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    ocpp_host: str | None = Field(default=None, description="Default: same as HOST.")
    ocpp_port: int = Field(default=9000, ge=0, le=65535)
    tls_cert: Path | None = Field(default=None, description="PEM certificate: OCPP profile 2.")
    tls_key: Path | None = None
    token_ttl_hours: float = Field(default=24 * 14, gt=0)
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    bootstrap_admin_email: str = "admin@example.com"
    public_url: str | None = Field(default=None, description="URL printed for newcomers.")
    allow_signup: bool = Field(
        default=False,
        description="Let anyone create an account with POST /api/users (no verification). "
        "Off: accounts come from `evaccess admin create-user` and invitations.",
    )

    commissioning_code_ttl_days: float = Field(
        default=730,
        gt=0,
        description="How long a commissioning code (the QR sticker) works after it is issued.",
    )
    smtp_url: SecretStr | None = Field(
        default=None,
        description="Send notifications by email: smtp://[user[:password]@]host[:port]"
        "[?starttls=true]. Unset: notifications are written to the server log.",
    )
    smtp_from: str = Field(default="evaccess@localhost", description="Sender of notifications.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("EVACCESS_TLS_CERT and EVACCESS_TLS_KEY go together")
        if not self.resolved_database_url.startswith(SUPPORTED_DATABASES):
            raise ValueError(
                "EVACCESS_DATABASE_URL must start with " + " or ".join(SUPPORTED_DATABASES)
            )
        return self

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'evaccess.db').resolve()}"

    @property
    def resolved_keys_dir(self) -> Path:
        return self.keys_dir or self.data_dir / "keys"


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment (and explicit overrides), or ``ConfigurationError``."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        name = f"EVACCESS_{where.upper()}" if first["loc"] else "settings"
        raise ConfigurationError(f"{name}: {first['msg']}") from None
