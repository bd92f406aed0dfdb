"""Support's claim queue (support agents only, ``claims.require_support``): the open claims
or those in one state, a claim's evidence (its purchase agreement as a download, audited),
who approved it so far and its objection window, approving (two different agents) and
rejecting with a reason. The same services as ``api/claims.py``."""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import APIRouter, Form, Request, Response

from evaccess.domain import errors
from evaccess.domain.claim import OPEN, ClaimState
from evaccess.server.portal.web import (
    Ctx,
    CurrentSession,
    PortalRoute,
    PostSession,
    render,
    see_other,
)
from evaccess.server.services import claims

router = APIRouter(route_class=PortalRoute, include_in_schema=False)

EXTENSIONS = {"application/pdf": "pdf", "image/png": "png", "image/jpeg": "jpg"}
"""The only types a document is served as (anything else: an opaque download)."""


def _state(value: str) -> ClaimState | None:
    if not value or value == "open":
        return None
    try:
        return ClaimState(value)
    except ValueError:
        raise errors.InvalidInput("no such claim state") from None


@router.get("/support/claims")
async def queue_page(
    request: Request, ctx: Ctx, session: CurrentSession, state: str = ""
) -> Response:
    wanted = _state(state[:32])
    rows = await claims.queue(ctx, session.actor, wanted)
    values = {
        "claims": rows,
        "state": wanted.value if wanted else "open",
        "states": list(ClaimState),
        "now": ctx.clock.now(),
    }
    return render(request, "support/queue.html", session, values)


@router.get("/support/claims/{claim_id}")
async def claim_page(
    request: Request, ctx: Ctx, session: CurrentSession, claim_id: str
) -> Response:
    view = await claims.show(ctx, session.actor, claim_id)
    me = session.email.casefold()
    values = {
        "claim": view,
        "now": ctx.clock.now(),
        "is_open": view.state in OPEN,
        "may_approve": view.state in (ClaimState.FILED, ClaimState.APPROVED_ONCE)
        and (view.first_approver_email or "").casefold() != me
        and view.claimant_email.casefold() != me,
        "approved_by_me": (view.first_approver_email or "").casefold() == me,
        "size_kb": f"{max(1, round(view.document_size / 1024))}",
        "kind": EXTENSIONS.get(view.document_type, "file").upper(),
    }
    return render(request, "support/claim.html", session, values)


@router.get("/support/claims/{claim_id}/document")
async def document(ctx: Ctx, session: CurrentSession, claim_id: str) -> Response:
    """The purchase agreement as a download: never shown inline, never cached, sandboxed."""
    data, kind = await claims.document(ctx, session.actor, claim_id)
    extension = EXTENSIONS.get(kind)
    safe_id = re.sub(r"[^A-Za-z0-9-]", "", claim_id)[:64]
    return Response(
        data,
        media_type=kind if extension else "application/octet-stream",
        headers={
            "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="claim-{safe_id}.{extension or "bin"}"',
            "Content-Security-Policy": "default-src 'none'; sandbox",
            "X-Content-Type-Options": "nosniff",
        },
    )


@router.post("/support/claims/{claim_id}/approve")
async def approve(ctx: Ctx, session: PostSession, claim_id: str) -> Response:
    decided = await claims.approve(ctx, session.actor, claim_id)
    claim = decided.claim
    if decided.handover is not None:
        done = f"Approved: {claim.serial} is handed over to {claim.claimant_email}."
    elif claim.state is ClaimState.APPROVED:
        until = f"{claim.objection_until:%Y-%m-%d %H:%M} UTC" if claim.objection_until else ""
        done = (
            f"Approved twice: {claim.serial} is handed over when the owner's objection "
            f"window closes ({until}) unless they object."
        )
    else:
        done = "Approved once: a second, different support agent must approve it too."
    return see_other(f"/support/claims/{claim.id}", done=done)


@router.post("/support/claims/{claim_id}/reject")
async def reject(
    ctx: Ctx,
    session: PostSession,
    claim_id: str,
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Response:
    if not reason.strip():
        raise errors.InvalidInput("a rejection gives the claimant a reason")
    view = await claims.reject(ctx, session.actor, claim_id, reason)
    return see_other(
        f"/support/claims/{view.id}", done="Rejected: the claimant is told your reason."
    )
