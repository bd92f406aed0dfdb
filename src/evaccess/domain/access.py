"""Who may do what: roles, grants on a charger, and the permission table.

A caller's relation to a charger is a set of *bases*: the grants they hold on it (owner,
invited user, service) and their role in the organisation the charger belongs to (or one
of its ancestors). Every action names the bases that allow it; anything else is denied.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from enum import StrEnum

from evaccess.domain.errors import InvalidInput, PermissionDenied


class Role(StrEnum):
    """A member's role in an organisation (applies to its subgroups too)."""

    SUPER_ADMIN = "super_admin"
    ADMIN = "admin"
    USER = "user"


class GrantKind(StrEnum):
    """A person's access to one charger."""

    OWNER = "owner"
    USER = "user"
    SERVICE = "service"


class StaffRole(StrEnum):
    """The operator's own people, beside organisations: ``support`` reviews ownership
    claims (and never sees a PIN or keypad code); ``manufacturer`` prints packaging labels.
    Only the server's operator gives these (``evaccess admin set-staff-role``)."""

    SUPPORT = "support"
    MANUFACTURER = "manufacturer"


SERVICE_ACCESS_TTL = timedelta(days=14)
"""How long an installer's or service technician's access lasts unless the owner extends
it (or ends it sooner)."""


def grant_expiry(kind: GrantKind, requested: datetime | None, now: datetime) -> datetime | None:
    """When a grant of ``kind`` made at ``now`` ends: service access always expires (by
    default after ``SERVICE_ACCESS_TTL``); owner and user grants do not. The one place that
    decides it: every check of a grant reads its ``expires_at``."""
    if kind is not GrantKind.SERVICE:
        if requested is not None:
            raise InvalidInput("only service access expires")
        return None
    if requested is None:
        return now + SERVICE_ACCESS_TTL
    if requested <= now:
        raise InvalidInput("the service access would already have expired")
    return requested


class Basis(StrEnum):
    """Why a caller may act on a charger; recorded in the audit log with each reveal."""

    OWNER = "owner"
    USER = "user"
    SERVICE = "service"
    ORG_SUPER_ADMIN = "org_super_admin"
    ORG_ADMIN = "org_admin"
    ORG_USER = "org_user"
    ORG_MEMBER = "org_member"
    """Any member of the charger's organisation (or of an organisation above it), when that
    organisation lets all its members use all its chargers (``MemberAccess.ALL``)."""

    @classmethod
    def of_grant(cls, kind: GrantKind) -> Basis:
        return cls(kind.value)

    @classmethod
    def of_role(cls, role: Role) -> Basis:
        return {
            Role.SUPER_ADMIN: cls.ORG_SUPER_ADMIN,
            Role.ADMIN: cls.ORG_ADMIN,
            Role.USER: cls.ORG_USER,
        }[role]


class MemberAccess(StrEnum):
    """An organisation's member access policy: who among its members may use its chargers."""

    ASSIGNED = "assigned"
    """Only the members a charger has been assigned to (or shared with)."""
    ALL = "all"
    """Every member, at every charger of the organisation (assignment still works too)."""


# The bases an organisation's member access policy gives every member at its chargers.
MEMBER_ACCESS_BASES: dict[MemberAccess, frozenset[Basis]] = {
    MemberAccess.ASSIGNED: frozenset(),
    MemberAccess.ALL: frozenset({Basis.ORG_MEMBER}),
}


def member_bases(policy: MemberAccess, role: Role | None) -> frozenset[Basis]:
    """What being a member (``role`` not None) of a charger's organisation gives, besides
    the role's own basis, under the organisation's member access policy."""
    return MEMBER_ACCESS_BASES[policy] if role is not None else frozenset()


# The grants on which a personal keypad PIN (the PIN space of a user, not of an
# organisation) works at a charger: the owner's own chargers only. A charger's keypad
# checks its organisation's PIN space and its current owner's personal one, nobody else's.
PERSONAL_KEYPAD_GRANTS = frozenset({GrantKind.OWNER})


class ChargerAction(StrEnum):
    VIEW = "view"
    VIEW_STATUS = "view_status"
    REVEAL_BLUETOOTH_PIN = "reveal_bluetooth_pin"
    ENABLE_BLUETOOTH_PIN = "enable_bluetooth_pin"
    CHANGE_BLUETOOTH_PIN = "change_bluetooth_pin"
    VIEW_REVEAL_HISTORY = "view_reveal_history"
    MANAGE_GRANTS = "manage_grants"
    ASSIGN = "assign"
    VIEW_SECURITY_EVENTS = "view_security_events"
    MANAGE_PHONES = "manage_phones"
    USE_KEYPAD = "use_keypad"
    VIEW_ALL_TRANSACTIONS = "view_all_transactions"
    TRANSFER_OWNERSHIP = "transfer_ownership"
    VIEW_KEYPAD_HOLDERS = "view_keypad_holders"


_GRANTS = frozenset({Basis.OWNER, Basis.USER, Basis.SERVICE})
_ADMINS = frozenset({Basis.ORG_SUPER_ADMIN, Basis.ORG_ADMIN})

# Deny by default: an action absent from this table is allowed to nobody. Reveal is further
# narrowed by the charger's PIN policy (``PinPolicy.visible_to``).
CHARGER_PERMISSIONS: dict[ChargerAction, frozenset[Basis]] = {
    ChargerAction.VIEW: _GRANTS | _ADMINS,
    ChargerAction.VIEW_STATUS: _GRANTS | _ADMINS,
    ChargerAction.REVEAL_BLUETOOTH_PIN: _GRANTS,
    ChargerAction.ENABLE_BLUETOOTH_PIN: frozenset({Basis.OWNER}),
    ChargerAction.CHANGE_BLUETOOTH_PIN: frozenset({Basis.OWNER, Basis.SERVICE}),
    ChargerAction.VIEW_REVEAL_HISTORY: frozenset({Basis.OWNER}),
    ChargerAction.MANAGE_GRANTS: frozenset({Basis.OWNER, Basis.ORG_SUPER_ADMIN}),
    ChargerAction.ASSIGN: frozenset({Basis.ORG_SUPER_ADMIN}),
    ChargerAction.VIEW_SECURITY_EVENTS: frozenset({Basis.OWNER, Basis.SERVICE}) | _ADMINS,
    # Revoking phone credentials and lifting the 100-failure pairing cap: the owner, and the
    # installer who answers the owner's call.
    ChargerAction.MANAGE_PHONES: frozenset({Basis.OWNER, Basis.SERVICE}),
    # The keypad works for anyone the charger is shared with, for the members of its
    # organisation it has been assigned to (assignment creates a USER grant), and for all
    # its members when the organisation's member access policy is ``all``.
    ChargerAction.USE_KEYPAD: _GRANTS | {Basis.ORG_MEMBER},
    # Everyone who sees a charger sees their own charging sessions there; everybody's, only
    # its owner and the organisation's admins.
    ChargerAction.VIEW_ALL_TRANSACTIONS: frozenset({Basis.OWNER}) | _ADMINS,
    # Offering the charger to someone else, or releasing it (moving out): its owner only.
    ChargerAction.TRANSFER_OWNERSHIP: frozenset({Basis.OWNER}),
    # Whose keypad PIN opens the charger (names and emails, never a PIN): its owner and the
    # organisation's admins, who answer for who gets in.
    ChargerAction.VIEW_KEYPAD_HOLDERS: frozenset({Basis.OWNER}) | _ADMINS,
}


class OrgAction(StrEnum):
    VIEW = "view"
    VIEW_MEMBERS = "view_members"
    MANAGE_MEMBERS = "manage_members"
    CHANGE_ROLES = "change_roles"
    CREATE_SUBGROUP = "create_subgroup"
    REGISTER_CHARGER = "register_charger"
    SET_MEMBER_KEYPAD_PIN = "set_member_keypad_pin"
    VIEW_AUDIT = "view_audit"
    CHANGE_SETTINGS = "change_settings"
    SET_MEMBER_ACCESS = "set_member_access"


ORG_PERMISSIONS: dict[OrgAction, frozenset[Role]] = {
    OrgAction.VIEW: frozenset(Role),
    OrgAction.VIEW_MEMBERS: frozenset({Role.SUPER_ADMIN, Role.ADMIN}),
    OrgAction.MANAGE_MEMBERS: frozenset({Role.SUPER_ADMIN, Role.ADMIN}),
    OrgAction.CHANGE_ROLES: frozenset({Role.SUPER_ADMIN}),
    OrgAction.CREATE_SUBGROUP: frozenset({Role.SUPER_ADMIN}),
    OrgAction.REGISTER_CHARGER: frozenset({Role.SUPER_ADMIN, Role.ADMIN}),
    OrgAction.SET_MEMBER_KEYPAD_PIN: frozenset({Role.SUPER_ADMIN, Role.ADMIN}),
    OrgAction.VIEW_AUDIT: frozenset({Role.SUPER_ADMIN}),
    OrgAction.CHANGE_SETTINGS: frozenset({Role.SUPER_ADMIN}),
    OrgAction.SET_MEMBER_ACCESS: frozenset({Role.SUPER_ADMIN, Role.ADMIN}),
}


def allowed_bases(action: ChargerAction, bases: Iterable[Basis]) -> frozenset[Basis]:
    """The caller's bases that allow ``action`` (empty: denied)."""
    return CHARGER_PERMISSIONS.get(action, frozenset()) & frozenset(bases)


def require_charger(action: ChargerAction, bases: Iterable[Basis]) -> Basis:
    """The strongest basis allowing ``action``, or ``PermissionDenied``."""
    allowed = allowed_bases(action, bases)
    if not allowed:
        raise PermissionDenied(f"not allowed to {action.value.replace('_', ' ')}")
    return min(allowed, key=list(Basis).index)


def require_org(action: OrgAction, role: Role | None) -> Role:
    if role is None or role not in ORG_PERMISSIONS.get(action, frozenset()):
        raise PermissionDenied(f"not allowed to {action.value.replace('_', ' ')}")
    return role
