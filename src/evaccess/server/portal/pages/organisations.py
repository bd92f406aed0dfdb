"""Organisations: the tree a person sees, creating organisations and subgroups, an
organisation's settings, its Users page (members, roles, chargers assigned, and each
member's keypad PIN, a generated one shown once in the answer to the POST) and its audit
log with filters."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Form, Request, Response

from evaccess.domain import errors
from evaccess.domain.access import ORG_PERMISSIONS, MemberAccess, OrgAction, Role
from evaccess.domain.pins import KEYPAD_MAX_DIGITS, KEYPAD_MIN_DIGITS
from evaccess.server.portal.web import (
    Ctx,
    CurrentSession,
    PortalRoute,
    PostSession,
    Session,
    render,
    see_other,
)
from evaccess.server.services import chargers, grants, keypad_pins, organisations
from evaccess.server.services.organisations import AuditFilter, MemberView

if TYPE_CHECKING:
    from evaccess.server.db.models import Organisation

router = APIRouter(route_class=PortalRoute, include_in_schema=False)

ROLE_LABELS = {Role.SUPER_ADMIN: "Super-admin", Role.ADMIN: "Admin", Role.USER: "User"}
AUDIT_PAGE = 50
SECRET_WORDS = ("pin", "password", "secret", "token", "code", "key", "card", "hash")
"""Detail keys whose values never reach the audit page (the records hold no secret; this is
a second fence). ``keypad_pin_digits`` and the like are lengths, not secrets: let through."""
HARMLESS_DETAILS = frozenset({"keypad_pin_digits", "generated", "personal", "digits"})


def may(role: Role, action: OrgAction) -> bool:
    return role in ORG_PERMISSIONS[action]


@dataclass
class TreeNode:
    org: Organisation
    role: Role
    children: list[TreeNode] = field(default_factory=list)


def _tree(visible: list[tuple[Organisation, Role]]) -> list[TreeNode]:
    nodes = {org.id: TreeNode(org=org, role=role) for org, role in visible}
    roots: list[TreeNode] = []
    for node in nodes.values():  # already sorted by name
        parent = nodes.get(node.org.parent_id) if node.org.parent_id else None
        (parent.children if parent else roots).append(node)
    return roots


@router.get("/organisations")
async def list_page(request: Request, ctx: Ctx, session: CurrentSession) -> Response:
    visible = await organisations.visible_organisations(ctx, session.actor)
    values = {
        "tree": _tree(visible),
        "parents": [org for org, role in visible if may(role, OrgAction.CREATE_SUBGROUP)],
        "may_create": session.actor.is_system_admin,
        "labels": ROLE_LABELS,
    }
    return render(request, "organisations/list.html", session, values)


@router.post("/organisations")
async def create(
    ctx: Ctx, session: PostSession, name: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    org = await organisations.create_organisation(ctx, session.actor, name)
    return see_other(f"/organisations/{org.id}", done=f"Organisation {org.name} created.")


@router.post("/organisations/subgroups")
async def create_subgroup(
    ctx: Ctx,
    session: PostSession,
    parent_id: Annotated[str, Form(max_length=64)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """The subgroup forms of the organisations page (the parent chosen in a list) and of an
    organisation's settings (the parent given)."""
    org = await organisations.create_subgroup(ctx, session.actor, parent_id, name)
    return see_other(f"/organisations/{org.id}", done=f"Subgroup {org.name} created.")


async def _org_values(ctx: Ctx, session: Session, org_id: str) -> dict[str, Any]:
    org, role = await organisations.get_organisation(ctx, session.actor, org_id)
    visible = await organisations.visible_organisations(ctx, session.actor)
    names = {o.id: o.name for o, _ in visible}
    return {
        "org": org,
        "role": role,
        "role_label": ROLE_LABELS[role],
        "parent_name": names.get(org.parent_id) if org.parent_id else None,
        "subgroups": [o for o, _ in visible if o.parent_id == org.id],
        "may_settings": may(role, OrgAction.CHANGE_SETTINGS) and org.parent_id is None,
        "may_member_access": may(role, OrgAction.SET_MEMBER_ACCESS),
        "may_members": may(role, OrgAction.VIEW_MEMBERS),
        "may_roles": may(role, OrgAction.CHANGE_ROLES),
        "may_audit": may(role, OrgAction.VIEW_AUDIT),
        "may_subgroup": may(role, OrgAction.CREATE_SUBGROUP),
    }


@router.get("/organisations/{org_id}")
async def settings_page(
    request: Request, ctx: Ctx, session: CurrentSession, org_id: str
) -> Response:
    values = await _org_values(ctx, session, org_id)
    values["digit_choices"] = range(KEYPAD_MIN_DIGITS, KEYPAD_MAX_DIGITS + 1)
    return render(request, "organisations/settings.html", session, values)


@router.post("/organisations/{org_id}/settings")
async def save_settings(
    ctx: Ctx,
    session: PostSession,
    org_id: str,
    keypad_pin_digits: Annotated[int, Form(ge=KEYPAD_MIN_DIGITS, le=KEYPAD_MAX_DIGITS)],
    offline_keypad: Annotated[str, Form(pattern="^(yes|no)$")],
) -> Response:
    await organisations.update_settings(
        ctx,
        session.actor,
        org_id,
        keypad_pin_digits=keypad_pin_digits,
        offline_keypad=offline_keypad == "yes",
    )
    return see_other(f"/organisations/{org_id}", done="Settings saved.")


@router.post("/organisations/{org_id}/member-access")
async def save_member_access(
    ctx: Ctx, session: PostSession, org_id: str, member_access: Annotated[MemberAccess, Form()]
) -> Response:
    await organisations.set_member_access(ctx, session.actor, org_id, member_access)
    return see_other(f"/organisations/{org_id}", done="Member access saved.")


# --- Users ---------------------------------------------------------------------------------


async def _users_values(ctx: Ctx, session: Session, org_id: str, **extra: Any) -> dict[str, Any]:
    values = await _org_values(ctx, session, org_id)
    actor = session.actor
    members = await organisations.members(ctx, actor, org_id)
    crowding = await keypad_pins.crowding(ctx, actor, org_id)
    # The chargers one may assign here: those of this organisation and its subgroups.
    visible = await organisations.visible_organisations(ctx, actor)
    below = {org_id} | _descendants(visible, org_id)
    assignable = [
        v.charger
        for v in await chargers.list_chargers(ctx, actor)
        if v.charger.organisation_id in below
    ]
    return {
        **values,
        "members": members,
        "crowding": crowding,
        "crowding_percent": f"{crowding.ratio * 100:.1f}",
        "assignable": sorted(assignable, key=lambda c: c.serial),
        "roles": list(Role),
        "labels": ROLE_LABELS,
        "may_add": may(values["role"], OrgAction.MANAGE_MEMBERS),
        "may_pins": may(values["role"], OrgAction.SET_MEMBER_KEYPAD_PIN),
        **extra,
    }


def _descendants(visible: list[tuple[Organisation, Role]], org_id: str) -> set[str]:
    found: set[str] = set()
    frontier = [org_id]
    while frontier:
        current = frontier.pop()
        for org, _ in visible:
            if org.parent_id == current and org.id not in found:
                found.add(org.id)
                frontier.append(org.id)
    return found


@router.get("/organisations/{org_id}/users")
async def users_page(request: Request, ctx: Ctx, session: CurrentSession, org_id: str) -> Response:
    values = await _users_values(ctx, session, org_id)
    return render(request, "organisations/users.html", session, values)


@router.post("/organisations/{org_id}/members")
async def add_member(
    ctx: Ctx,
    session: PostSession,
    org_id: str,
    email: Annotated[str, Form(max_length=320)] = "",
    role: Annotated[Role, Form()] = Role.USER,
) -> Response:
    member = await organisations.add_member(ctx, session.actor, org_id, email, role)
    return see_other(
        f"/organisations/{org_id}/users",
        done=f"{member.email} is now a member ({ROLE_LABELS[member.role].lower()}).",
    )


async def _member(ctx: Ctx, session: Session, org_id: str, user_id: str) -> MemberView:
    for member in await organisations.members(ctx, session.actor, org_id):
        if member.user_id == user_id:
            return member
    raise errors.NotFound("no such member")


@router.post("/organisations/{org_id}/members/{user_id}/role")
async def change_role(
    ctx: Ctx,
    session: PostSession,
    org_id: str,
    user_id: str,
    role: Annotated[Role, Form()],
) -> Response:
    member = await _member(ctx, session, org_id, user_id)
    await organisations.change_role(ctx, session.actor, org_id, user_id, role)
    return see_other(
        f"/organisations/{org_id}/users",
        done=f"{member.email} is now {ROLE_LABELS[role].lower()}.",
    )


@router.post("/organisations/{org_id}/members/{user_id}/assign")
async def assign_charger(
    ctx: Ctx,
    session: PostSession,
    org_id: str,
    user_id: str,
    charger_id: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    await _member(ctx, session, org_id, user_id)
    assigned = await grants.assign(ctx, session.actor, charger_id, user_id)
    view = await chargers.get_charger(ctx, session.actor, charger_id)
    return see_other(
        f"/organisations/{org_id}/users",
        done=f"Charger {view.charger.serial} is assigned to {assigned.email}.",
    )


@router.get("/organisations/{org_id}/members/{user_id}/keypad-pin")
async def member_pin_form(
    request: Request, ctx: Ctx, session: CurrentSession, org_id: str, user_id: str
) -> Response:
    """The small keypad PIN form of one member: in place on the Users page (htmx), or as a
    page of its own without script."""
    org, _ = await organisations.get_organisation(ctx, session.actor, org_id)
    member = await _member(ctx, session, org_id, user_id)
    values = {"org": org, "member": member}
    if request.headers.get("hx-request") == "true":
        return render(request, "organisations/_pin_form.html", session, values)
    return render(request, "organisations/pin.html", session, values)


@router.post("/organisations/{org_id}/members/{user_id}/keypad-pin")
async def set_member_pin(
    request: Request,
    ctx: Ctx,
    session: PostSession,
    org_id: str,
    user_id: str,
    pin: Annotated[str, Form(max_length=16)] = "",
    generate: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    """A PIN of the admin's choice, or (``generate``, or left empty) one the server makes,
    shown once in this answer: never in a URL, never cached."""
    member = await _member(ctx, session, org_id, user_id)
    chosen = None if generate else pin.strip() or None
    result = await keypad_pins.set_pin(ctx, session.actor, org_id, user_id, chosen)
    if result.generated_pin is None:
        return see_other(
            f"/organisations/{org_id}/users",
            done=f"The keypad PIN of {member.email} is set ({result.digits} digits).",
        )
    values = await _users_values(
        ctx,
        session,
        org_id,
        generated=result.generated_pin,
        generated_for=member,
        flash=f"A new keypad PIN is set for {member.email}.",
    )
    return render(request, "organisations/users.html", session, values)


@router.post("/organisations/{org_id}/members/{user_id}/keypad-pin/delete")
async def delete_member_pin(ctx: Ctx, session: PostSession, org_id: str, user_id: str) -> Response:
    member = await _member(ctx, session, org_id, user_id)
    await keypad_pins.delete_pin(ctx, session.actor, org_id, user_id)
    return see_other(
        f"/organisations/{org_id}/users", done=f"The keypad PIN of {member.email} is deleted."
    )


# --- Audit ---------------------------------------------------------------------------------


def _day(value: str, name: str) -> datetime | None:
    if not value.strip():
        return None
    try:
        return datetime.combine(date.fromisoformat(value.strip()), datetime.min.time(), UTC)
    except ValueError:
        raise errors.InvalidInput(f"{name}: a date as YYYY-MM-DD") from None


def _details(raw: str) -> list[tuple[str, str]]:
    try:
        parsed = json.loads(raw or "{}")
    except ValueError:
        return []
    if not isinstance(parsed, dict):
        return []
    shown = []
    for key, value in sorted(parsed.items()):
        if value is None:
            continue
        if key not in HARMLESS_DETAILS and any(w in key.casefold() for w in SECRET_WORDS):
            value = "(hidden)"
        shown.append((key, value if isinstance(value, str) else json.dumps(value)))
    return shown


@router.get("/organisations/{org_id}/audit")
async def audit_page(
    request: Request,
    ctx: Ctx,
    session: CurrentSession,
    org_id: str,
    action: str = "",
    actor: str = "",
    charger: str = "",
    since: str = "",
    until: str = "",
    before: int | None = None,
) -> Response:
    action, actor, charger = action.strip()[:64], actor.strip()[:320], charger.strip()[:64]
    last_day = _day(until, "until")
    where = AuditFilter(
        action=action or None,
        actor_email=actor or None,
        charger_serial=charger or None,
        since=_day(since, "since"),
        until=last_day + timedelta(days=1) if last_day else None,
    )
    values = await _org_values(ctx, session, org_id)
    views = await organisations.audit_log(
        ctx, session.actor, org_id, limit=AUDIT_PAGE + 1, before=before, where=where
    )
    more = len(views) > AUDIT_PAGE
    views = views[:AUDIT_PAGE]
    query = {"action": action, "actor": actor, "charger": charger, "since": since, "until": until}
    values |= {
        "records": [(v, _details(v.record.details)) for v in views],
        "filters": query,
        "older": views[-1].record.seq if more and views else None,
        "before": before,
        "page_size": AUDIT_PAGE,
    }
    return render(request, "organisations/audit.html", session, values)
