"""The tables. Ownership is a row of its own (``ownerships``): every grant, invitation and
phone credential that derives from an ownership points at it, so an ownership transfer ends
all of them in one transaction with one UPDATE per table (``WHERE ownership_id = :old``)."""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from evaccess.server.db.types import ID, UtcDateTime, new_id

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Organisation(Base):
    """A group; subgroups point at their parent. ``root_id`` names the keypad PIN space."""

    __tablename__ = "organisations"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200))
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("organisations.id"), index=True)
    root_id: Mapped[str] = mapped_column(ID, index=True)
    keypad_pin_digits: Mapped[int] = mapped_column(Integer, default=4)
    offline_keypad: Mapped[bool] = mapped_column(Boolean, default=False)
    member_access: Mapped[str] = mapped_column(
        String(16), default="assigned", server_default="assigned"
    )
    """``domain.access.MemberAccess``: ``all`` lets every member use the organisation's
    chargers; ``assigned`` only those a charger is assigned to."""
    master_pass_group_id: Mapped[str | None] = mapped_column(String(20))
    """OCPP ``MasterPassGroupId`` (2.0.1 C16): tokens of this group stop, never start."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class User(Base):
    __tablename__ = "users"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(200))
    is_system_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    staff_role: Mapped[str | None] = mapped_column(String(20))
    """``domain.access.StaffRole`` of the operator's own staff (support, manufacturer):
    set only by the server's operator (``evaccess admin set-staff-role``)."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("user_id", "organisation_id"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    organisation_id: Mapped[str] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ApiToken(Base):
    """Opaque bearer tokens, stored as SHA-256 (they carry 256 bits of entropy)."""

    __tablename__ = "api_tokens"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Charger(Base):
    __tablename__ = "chargers"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    serial: Mapped[str] = mapped_column(String(64), unique=True)
    organisation_id: Mapped[str] = mapped_column(ForeignKey("organisations.id"), index=True)
    vendor: Mapped[str] = mapped_column(String(100))
    model: Mapped[str] = mapped_column(String(100))
    firmware: Mapped[str] = mapped_column(String(64))
    production_date: Mapped[date | None] = mapped_column(Date)
    has_bluetooth: Mapped[bool] = mapped_column(Boolean, default=True)
    has_keypad: Mapped[bool] = mapped_column(Boolean, default=False)
    ocpp_password_hash: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # Connection state, kept by the OCPP endpoint.
    online: Mapped[bool] = mapped_column(Boolean, default=False)
    ocpp_protocol: Mapped[str | None] = mapped_column(String(16))
    last_seen_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    local_list_version: Mapped[int] = mapped_column(Integer, default=0)


class ConnectorStatus(Base):
    __tablename__ = "connector_statuses"
    charger_id: Mapped[str] = mapped_column(
        ForeignKey("chargers.id", ondelete="CASCADE"), primary_key=True
    )
    evse_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    connector_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    status: Mapped[str] = mapped_column(String(32))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class Ownership(Base):
    """One period during which one user owns one charger (open while ``ended_at`` is null)."""

    __tablename__ = "ownerships"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    charger_id: Mapped[str] = mapped_column(
        ForeignKey("chargers.id", ondelete="CASCADE"), index=True
    )
    owner_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


Index(
    "uq_ownerships_open_per_charger",
    Ownership.charger_id,
    unique=True,
    sqlite_where=Ownership.ended_at.is_(None),
    postgresql_where=Ownership.ended_at.is_(None),
)


class Grant(Base):
    """Access to a charger: owner, invited user or service (installer, optional expiry)."""

    __tablename__ = "grants"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    charger_id: Mapped[str] = mapped_column(
        ForeignKey("chargers.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    ownership_id: Mapped[str | None] = mapped_column(ForeignKey("ownerships.id"), index=True)
    granted_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Invitation(Base):
    __tablename__ = "invitations"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    charger_id: Mapped[str] = mapped_column(
        ForeignKey("chargers.id", ondelete="CASCADE"), index=True
    )
    ownership_id: Mapped[str | None] = mapped_column(ForeignKey("ownerships.id"), index=True)
    email: Mapped[str] = mapped_column(String(320), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)
    invited_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    service_expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class OwnershipTransfer(Base):
    """An owner's offer of a charger to an email address (``domain.ownership_transfer``):
    ``open`` until accepted, cancelled or expired. ``ownership_id`` is the ownership on
    offer: a transfer outlives nothing of it."""

    __tablename__ = "ownership_transfers"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    charger_id: Mapped[str] = mapped_column(
        ForeignKey("chargers.id", ondelete="CASCADE"), index=True
    )
    ownership_id: Mapped[str] = mapped_column(ForeignKey("ownerships.id"), index=True)
    from_user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    to_email: Mapped[str] = mapped_column(String(320), index=True)
    keep_service_access: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    """The installer's handover: on acceptance the sender keeps service access (expiring
    like any service grant) under the new ownership."""
    state: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    decided_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))


class OwnershipClaim(Base):
    """A claim of a charger through support (``domain.claim``). ``ownership_id``: the
    ownership current at filing (whose owner may object), null when it had none. The
    purchase agreement lies in the claim document store, named by ``document_key``; only
    its type, size and SHA-256 are kept here."""

    __tablename__ = "ownership_claims"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    charger_id: Mapped[str] = mapped_column(
        ForeignKey("chargers.id", ondelete="CASCADE"), index=True
    )
    ownership_id: Mapped[str | None] = mapped_column(ForeignKey("ownerships.id"))
    claimant_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    installation_address: Mapped[str] = mapped_column(String(500))
    installer_name: Mapped[str] = mapped_column(String(200))
    document_key: Mapped[str] = mapped_column(String(64))
    document_type: Mapped[str] = mapped_column(String(40))
    document_size: Mapped[int] = mapped_column(Integer)
    document_sha256: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), index=True)
    filed_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    objection_until: Mapped[datetime | None] = mapped_column(UtcDateTime)
    first_approver_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    second_approver_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    decided_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    reason: Mapped[str | None] = mapped_column(String(500))
    """Why support rejected it (shown to the claimant)."""


class PhoneCredential(Base):
    """A phone's Bluetooth credential as the server knows it (id only, never the secret):
    lets the owner revoke one phone and a transfer revoke all."""

    __tablename__ = "phone_credentials"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    charger_id: Mapped[str] = mapped_column(
        ForeignKey("chargers.id", ondelete="CASCADE"), index=True
    )
    ownership_id: Mapped[str | None] = mapped_column(ForeignKey("ownerships.id"), index=True)
    phone_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class BluetoothPin(Base):
    """At most one per charger. PINs exist only as AES-256-GCM ciphertexts (nonce ||
    ciphertext || tag) whose associated data binds charger id and key version."""

    __tablename__ = "bluetooth_pins"
    charger_id: Mapped[str] = mapped_column(
        ForeignKey("chargers.id", ondelete="CASCADE"), primary_key=True
    )
    enabled: Mapped[bool] = mapped_column(Boolean, default=False)
    active_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    active_key_version: Mapped[int | None] = mapped_column(Integer)
    pending_ciphertext: Mapped[bytes | None] = mapped_column(LargeBinary)
    pending_key_version: Mapped[int | None] = mapped_column(Integer)
    pending_since: Mapped[datetime | None] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class OutboxCommand(Base):
    """The outbox of server -> charger commands (delivered over OCPP, oldest first)."""

    __tablename__ = "charger_commands"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    charger_id: Mapped[str] = mapped_column(
        ForeignKey("chargers.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(String(32))
    arguments: Mapped[str] = mapped_column(Text, default="{}")
    """JSON without secrets: a PIN command reads the PIN from ``bluetooth_pins``."""
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    accepted: Mapped[bool | None] = mapped_column(Boolean)


class KeypadPin(Base):
    """HMAC(pepper, pin space ‖ PIN): one per user and PIN space, unique within the space.

    A PIN space is an organisation tree (``pin_space_id``, its root) or one charger owner's
    personal space (``owner_id``, which is then also ``user_id``): exactly one is set."""

    __tablename__ = "keypad_pins"
    __table_args__ = (
        UniqueConstraint("pin_space_id", "digest"),
        UniqueConstraint("pin_space_id", "user_id"),
        UniqueConstraint("owner_id", "digest"),
        UniqueConstraint("owner_id", "user_id"),
        CheckConstraint("(pin_space_id IS NULL) <> (owner_id IS NULL)", name="one_space"),
    )
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    pin_space_id: Mapped[str | None] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE")
    )
    owner_id: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    digits: Mapped[int] = mapped_column(Integer)
    sealed_pin: Mapped[bytes | None] = mapped_column(LargeBinary)
    """Only in organisations that opted into offline keypad use (local lists need the code)."""
    sealed_key_version: Mapped[int | None] = mapped_column(Integer)
    set_by: Mapped[str] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class IdToken(Base):
    """An RFID card (or other OCPP token) of a user: HMAC(pepper, tree ‖ number), unique
    within the organisation tree (``root_id``); the number itself is never stored in clear
    (``sealed_value`` only for organisations that opted into local lists)."""

    __tablename__ = "id_tokens"
    __table_args__ = (UniqueConstraint("root_id", "digest"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    organisation_id: Mapped[str] = mapped_column(
        ForeignKey("organisations.id", ondelete="CASCADE"), index=True
    )
    root_id: Mapped[str] = mapped_column(ID)
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_type: Mapped[str] = mapped_column(String(16))
    digest: Mapped[bytes] = mapped_column(LargeBinary(32))
    last_chars: Mapped[str] = mapped_column(String(8))
    """The last characters of the number: all that is shown to people."""
    status: Mapped[str] = mapped_column(String(16))
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    group_id_token: Mapped[str | None] = mapped_column(String(20))
    label: Mapped[str | None] = mapped_column(String(100))
    sealed_value: Mapped[bytes | None] = mapped_column(LargeBinary)
    sealed_key_version: Mapped[int | None] = mapped_column(Integer)
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class LocalListEntry(Base):
    """What a charger's OCPP local authorization list holds, as the charger last accepted
    it: the basis of every differential update."""

    __tablename__ = "local_list_entries"
    charger_id: Mapped[str] = mapped_column(
        ForeignKey("chargers.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[str] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    sealed_pin: Mapped[bytes] = mapped_column(LargeBinary)
    sealed_key_version: Mapped[int] = mapped_column(Integer)


class LocalListCard(Base):
    """A card on a charger's local list, as the charger last accepted it (beside the keypad
    codes of ``local_list_entries``). No foreign key to ``id_tokens``: a deleted card must
    still be removable from the chargers that hold it."""

    __tablename__ = "local_list_cards"
    charger_id: Mapped[str] = mapped_column(
        ForeignKey("chargers.id", ondelete="CASCADE"), primary_key=True
    )
    token_id: Mapped[str] = mapped_column(ID, primary_key=True)
    token_type: Mapped[str] = mapped_column(String(16))
    sealed_value: Mapped[bytes] = mapped_column(LargeBinary)
    sealed_key_version: Mapped[int] = mapped_column(Integer)
    group_id_token: Mapped[str | None] = mapped_column(String(20))
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Transaction(Base):
    __tablename__ = "transactions"
    __table_args__ = (UniqueConstraint("charger_id", "transaction_id"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    charger_id: Mapped[str] = mapped_column(
        ForeignKey("chargers.id", ondelete="CASCADE"), index=True
    )
    transaction_id: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[str | None] = mapped_column(ForeignKey("users.id"), index=True)
    started_at: Mapped[datetime] = mapped_column(UtcDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    meter_wh: Mapped[float | None] = mapped_column()
    offline: Mapped[bool] = mapped_column(Boolean, default=False)
    meter_start_wh: Mapped[float | None] = mapped_column()
    """The first meter reading before the end: the session's energy is ``meter_wh`` minus it."""
    token_type: Mapped[str | None] = mapped_column(String(20))
    """The IdToken's type (``KeyCode``, ``ISO14443``, ...); the token value is never stored."""
    stop_reason: Mapped[str | None] = mapped_column(String(64))


class TransactionEventRecord(Base):
    __tablename__ = "transaction_events"
    __table_args__ = (UniqueConstraint("charger_id", "transaction_id", "seq_no"),)
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    charger_id: Mapped[str] = mapped_column(ForeignKey("chargers.id", ondelete="CASCADE"))
    transaction_id: Mapped[str] = mapped_column(String(64))
    seq_no: Mapped[int] = mapped_column(Integer)
    event_type: Mapped[str] = mapped_column(String(16))
    trigger_reason: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    offline: Mapped[bool] = mapped_column(Boolean, default=False)


class SecurityEvent(Base):
    __tablename__ = "security_events"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    charger_id: Mapped[str] = mapped_column(
        ForeignKey("chargers.id", ondelete="CASCADE"), index=True
    )
    event_type: Mapped[str] = mapped_column(String(64))
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    tech_info: Mapped[str | None] = mapped_column(String(255))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime)


class ChargerSetting(Base):
    """Non-secret settings a charger reported (Wi-Fi SSID, current limit, ...)."""

    __tablename__ = "charger_settings"
    charger_id: Mapped[str] = mapped_column(
        ForeignKey("chargers.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(255))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class AuditRecord(Base):
    """Append-only. ``mac`` = HMAC(audit key, previous mac ‖ canonical record): the chain
    makes edits, deletions, insertions and reordering detectable (``evaccess audit verify``)."""

    __tablename__ = "audit_records"
    __table_args__ = (Index("ix_audit_records_lane_seq", "lane", "seq"),)
    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=False
    )
    """The record's place in the log: one numbering across lanes, increasing within each."""
    lane: Mapped[int] = mapped_column(SmallInteger, default=1, server_default="1")
    """The chain the record extends (``AuditHead``): its ``prev_mac`` is the mac of the
    lane's record before it."""
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    action: Mapped[str] = mapped_column(String(64), index=True)
    actor_id: Mapped[str | None] = mapped_column(ID, index=True)
    organisation_id: Mapped[str | None] = mapped_column(ID, index=True)
    charger_id: Mapped[str | None] = mapped_column(ID, index=True)
    subject_id: Mapped[str | None] = mapped_column(ID)
    basis: Mapped[str | None] = mapped_column(String(32))
    request_id: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[str] = mapped_column(Text, default="{}")
    prev_mac: Mapped[bytes] = mapped_column(LargeBinary(32))
    mac: Mapped[bytes] = mapped_column(LargeBinary(32))


class AuditHead(Base):
    """A lane of the audit log: the sequence number and mac of its last record (0 and the
    genesis mac while it has none). An append locks one lane's row until it commits, which
    orders that lane's records. SQLite has one lane (it has one writer at a time anyway);
    PostgreSQL has several, so audited writes on several nodes do not queue behind one row
    (``audit.LANES``)."""

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"))
    mac: Mapped[bytes] = mapped_column(LargeBinary(32))


class CommissioningCode(Base):
    """The one-time code on a charger's QR sticker, as HMAC(pepper, charger ‖ code): at most
    one per charger (re-issuing replaces it); void once ``used_at`` is set."""

    __tablename__ = "commissioning_codes"
    charger_id: Mapped[str] = mapped_column(
        ForeignKey("chargers.id", ondelete="CASCADE"), primary_key=True
    )
    digest: Mapped[bytes] = mapped_column(LargeBinary)
    issued_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime] = mapped_column(UtcDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    used_by: Mapped[str | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class Notification(Base):
    """The notifications outbox: written in the transaction of what it reports, delivered
    afterwards by the server's background task (log or SMTP), retried until ``sent_at``
    (or ``failed_at`` after the last attempt). Never holds a PIN, a code or an access link."""

    __tablename__ = "notifications"
    id: Mapped[str] = mapped_column(ID, primary_key=True, default=new_id)
    user_id: Mapped[str | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    email: Mapped[str] = mapped_column(String(320))
    kind: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, server_default=func.now())
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UtcDateTime, index=True)
    """Null: due at once."""
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    failed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(String(200))
