"""Server settings: environment variables with the ``EVACCESS_`` prefix, checked at start-up
(fail fast: a wrong setting stops the server with one line, before anything listens)."""

from __future__ import annotations

import os
import socket
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
    tls_cert: Path | None = Field(
        default=None,
        description="PEM certificate chain of the OCPP endpoint (RSA or ECDSA): OCPP security "
        "profile 2 (wss://). OCPP 2.0.1 A00.FR.318's four cipher suites need one RSA and one "
        "ECDSA certificate: give the other one as TLS_CERT_2.",
    )
    tls_key: Path | None = Field(default=None, description="Its PEM private key (unencrypted).")
    tls_cert_2: Path | None = Field(
        default=None, description="A second chain, of the other key type (RSA or ECDSA)."
    )
    tls_key_2: Path | None = None
    tls_client_ca: Path | None = Field(
        default=None,
        description="PEM CA(s) that sign chargers' client certificates: OCPP security profile 3 "
        "(a charger with a valid certificate whose CN is its serial needs no password).",
    )
    tls_require_client_cert: bool = Field(
        default=False,
        description="Refuse chargers without a client certificate (profile 3 only).",
    )
    ocpp_compression: bool = Field(
        default=True,
        description="Accept WebSocket compression (permessage-deflate) when a charger offers "
        "it (OCPP-J requires a CSMS to support it); no context is kept between messages, so "
        "an idle charger costs no more memory.",
    )
    ocpp_compression_window_bits: int = Field(
        default=12, ge=9, le=15, description="Deflate window (2^N bytes) while compressing."
    )
    ocpp_compression_level: int = Field(default=6, ge=0, le=9, description="zlib level.")
    ocpp_compression_mem_level: int = Field(default=5, ge=1, le=9, description="zlib memLevel.")
    token_ttl_hours: float = Field(default=24 * 14, gt=0)
    auth_cache_ttl_s: float = Field(
        default=3600.0,
        gt=0,
        description="Seconds a charger may answer a card from its authorization cache "
        "(cacheExpiryDateTime): how long a revoked card can still work off line.",
    )
    log_level: str = Field(default="INFO", pattern="^(DEBUG|INFO|WARNING|ERROR)$")
    bootstrap_admin_email: str = "admin@example.com"
    public_url: str | None = Field(default=None, description="URL printed for newcomers.")
    portal_reauth_s: float = Field(
        default=300.0,
        ge=0,
        description="The portal shows a Bluetooth PIN only in a session begun (or confirmed "
        "with the password) within this many seconds; older sessions confirm the password.",
    )
    allow_signup: bool = Field(
        default=False,
        description="Let anyone create an account with POST /api/users (no verification). "
        "Off: accounts come from `evaccess admin create-user` and invitations.",
    )

    audit_checkpoint_file: Path | None = Field(
        default=None,
        description="Where `evaccess audit checkpoint` appends signed audit head checkpoints "
        "and `evaccess audit verify` reads them; keep it off the database's machine. Default: "
        "$XDG_STATE_HOME/evaccess/audit-checkpoints.jsonl (~/.local/state/...).",
    )
    commissioning_code_ttl_days: float = Field(
        default=730,
        gt=0,
        description="How long a commissioning code (the QR sticker) works after it is issued.",
    )
    claim_objection_days: float = Field(
        default=7,
        ge=0,
        description="How long a charger's owner may object to a claim filed through support.",
    )
    claim_dir: Path | None = Field(
        default=None, description="Where claim documents are kept; default DATA_DIR/claims."
    )
    claim_document_max_mb: float = Field(
        default=10, gt=0, le=100, description="Largest purchase agreement a claim may carry."
    )
    smtp_url: SecretStr | None = Field(
        default=None,
        description="Send notifications by email: smtp://[user[:password]@]host[:port]"
        "[?starttls=true]. Unset: notifications are written to the server log.",
    )
    smtp_from: str = Field(default="evaccess@localhost", description="Sender of notifications.")
    redis_url: SecretStr | None = Field(
        default=None,
        description="Cluster mode: share the security counters (keypad lockouts, login "
        "throttles, keypad-PIN rejections, sticker scans), keypad index changes, which node "
        "holds each charger and outbox wake-ups with the other nodes through this "
        "Redis (redis://[:password@]host[:port][/db], rediss:// for TLS). Unset: one node, "
        "counters in memory.",
    )
    redis_prefix: str = Field(
        default="evaccess:", min_length=1, description="Prefix of every Redis key of evaccess."
    )
    node_id: str = Field(
        default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}",
        min_length=1,
        description="This node's name in the cluster; default: host name and process id.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("EVACCESS_TLS_CERT and EVACCESS_TLS_KEY go together")
        if (self.tls_cert_2 is None) != (self.tls_key_2 is None):
            raise ValueError("EVACCESS_TLS_CERT_2 and EVACCESS_TLS_KEY_2 go together")
        if self.tls_cert is None and (self.tls_cert_2 or self.tls_client_ca):
            raise ValueError(
                "EVACCESS_TLS_CERT_2 and EVACCESS_TLS_CLIENT_CA need EVACCESS_TLS_CERT"
            )
        if self.tls_require_client_cert and self.tls_client_ca is None:
            raise ValueError("EVACCESS_TLS_REQUIRE_CLIENT_CERT needs EVACCESS_TLS_CLIENT_CA")
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
    def tls_chains(self) -> list[tuple[Path, Path]]:
        """The OCPP endpoint's (certificate, key) pairs; empty: plain ws://."""
        pairs = [(self.tls_cert, self.tls_key), (self.tls_cert_2, self.tls_key_2)]
        return [(cert, key) for cert, key in pairs if cert is not None and key is not None]

    @property
    def resolved_claim_dir(self) -> Path:
        return self.claim_dir or self.data_dir / "claims"

    @property
    def resolved_keys_dir(self) -> Path:
        return self.keys_dir or self.data_dir / "keys"

    @property
    def resolved_audit_checkpoint_file(self) -> Path:
        if self.audit_checkpoint_file is not None:
            return self.audit_checkpoint_file
        state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
        return Path(state) / "evaccess" / "audit-checkpoints.jsonl"


def load_settings(**overrides: object) -> Settings:
    """Settings from the environment (and explicit overrides), or ``ConfigurationError``."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "settings"
        name = f"EVACCESS_{where.upper()}" if first["loc"] else "settings"
        raise ConfigurationError(f"{name}: {first['msg']}") from None
