"""The REST routes of claims through support.

For everyone: file a claim (``multipart/form-data`` with the purchase agreement), list your
claims and those against your chargers, withdraw yours, object to one against your charger.
For support agents (``/api/support/claims``): the queue, a claim's evidence, its document,
approve (two different agents), reject with a reason.

Problem codes: ``claim_pending``, ``claim_own_charger``, ``claim_limit`` (429),
``claim_same_agent``, ``claim_no_owner``, ``claim_window_closed``, ``claim_<state>`` (the
claim is not open any more), ``document_type``, ``document_too_large``,
``document_missing``, besides the general ones."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from pydantic import Field

from evaccess.domain.claim import ClaimParty, ClaimState
from evaccess.server.api import schemas as s
from evaccess.server.api.deps import Ctx, CurrentActor
from evaccess.server.api.ownership import HandOverOut
from evaccess.server.api.problems import documented
from evaccess.server.services import claims

router = APIRouter(prefix="/api", tags=["claims"], responses=documented(500))


class ClaimOut(s.Out):
    id: str
    serial: str
    state: ClaimState
    role: ClaimParty = Field(description="claimant, or owner: why you see this claim.")
    filed_at: datetime
    objection_until: datetime | None = Field(
        description="Until when the owner at filing may object; null: the charger had none."
    )
    decided_at: datetime | None
    reason: str | None = Field(description="Support's reason for a rejection.")


class SupportClaimOut(s.Out):
    id: str
    charger_id: str
    serial: str
    vendor: str
    model: str
    claimant_email: str
    installation_address: str
    installer_name: str
    document_type: str
    document_size: int
    document_sha256: str
    state: ClaimState
    charger_owned: bool
    filed_at: datetime
    objection_until: datetime | None
    first_approver_email: str | None
    second_approver_email: str | None
    decided_at: datetime | None
    reason: str | None


class DecidedOut(s.Out):
    claim: SupportClaimOut
    handover: HandOverOut | None = Field(description="Set when this approval handed over.")


class RejectIn(s.In):
    reason: s.Text = Field(min_length=1, max_length=500, description="Shown to the claimant.")


@router.post(
    "/claims",
    response_model=ClaimOut,
    status_code=201,
    responses=documented(401, 404, 409, 422, 429),
)
async def file_claim(
    ctx: Ctx,
    actor: CurrentActor,
    serial: Annotated[s.Text, Form(max_length=64, description="The charger's serial number.")],
    installation_address: Annotated[s.Text, Form(max_length=500)],
    installer_name: Annotated[s.Text, Form(max_length=200)],
    document: Annotated[
        UploadFile, File(description="The purchase agreement: PDF, PNG or JPEG, 10 MB at most.")
    ],
) -> ClaimOut:
    """Ask support to make you the owner of a charger nobody can transfer to you. The
    owner, if any, is told and may object within 7 days; two support agents decide."""
    data = await document.read(ctx.claim_document_max_bytes + 1)
    view = await claims.file_claim(
        ctx,
        actor,
        serial,
        installation_address=installation_address,
        installer_name=installer_name,
        document=data,
    )
    return ClaimOut.model_validate(view)


@router.get("/claims", response_model=list[ClaimOut], responses=documented(401))
async def list_claims(ctx: Ctx, actor: CurrentActor) -> list[ClaimOut]:
    """Claims you filed, and claims against a charger you own, newest first."""
    return [ClaimOut.model_validate(v) for v in await claims.list_claims(ctx, actor)]


@router.post(
    "/claims/{claim_id}/withdraw",
    response_model=ClaimOut,
    responses=documented(401, 403, 404, 409, 422),
)
async def withdraw(claim_id: s.Text, ctx: Ctx, actor: CurrentActor) -> ClaimOut:
    """Take back a claim you filed."""
    return ClaimOut.model_validate(await claims.withdraw(ctx, actor, claim_id))


@router.post(
    "/claims/{claim_id}/object",
    response_model=ClaimOut,
    responses=documented(401, 403, 404, 409, 422),
)
async def object_to(claim_id: s.Text, ctx: Ctx, actor: CurrentActor) -> ClaimOut:
    """Stop a claim against your charger (before its objection window closes)."""
    return ClaimOut.model_validate(await claims.object_to(ctx, actor, claim_id))


@router.get(
    "/support/claims",
    response_model=list[SupportClaimOut],
    responses=documented(401, 403, 422),
    tags=["support"],
)
async def support_queue(
    ctx: Ctx,
    actor: CurrentActor,
    state: Annotated[ClaimState | None, Query(description="Default: the open ones.")] = None,
) -> list[SupportClaimOut]:
    """Support's queue: open claims, oldest first."""
    return [SupportClaimOut.model_validate(v) for v in await claims.queue(ctx, actor, state)]


@router.get(
    "/support/claims/{claim_id}",
    response_model=SupportClaimOut,
    responses=documented(401, 403, 404, 422),
    tags=["support"],
)
async def support_show(claim_id: s.Text, ctx: Ctx, actor: CurrentActor) -> SupportClaimOut:
    return SupportClaimOut.model_validate(await claims.show(ctx, actor, claim_id))


@router.get(
    "/support/claims/{claim_id}/document",
    response_class=Response,
    responses={
        **documented(401, 403, 404, 422),
        200: {
            "description": "The purchase agreement as filed (audited).",
            "content": {"application/pdf": {}, "image/png": {}, "image/jpeg": {}},
        },
    },
    tags=["support"],
)
async def support_document(claim_id: s.Text, ctx: Ctx, actor: CurrentActor) -> Response:
    data, kind = await claims.document(ctx, actor, claim_id)
    return Response(
        data,
        media_type=kind,
        headers={
            "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="claim-{claim_id}"',
            "Content-Security-Policy": "default-src 'none'; sandbox",
        },
    )


@router.post(
    "/support/claims/{claim_id}/approve",
    response_model=DecidedOut,
    responses=documented(401, 403, 404, 409, 422),
    tags=["support"],
)
async def support_approve(claim_id: s.Text, ctx: Ctx, actor: CurrentActor) -> DecidedOut:
    """Approve a claim; the second approval must come from a different agent."""
    decided = await claims.approve(ctx, actor, claim_id)
    return DecidedOut(
        claim=SupportClaimOut.model_validate(decided.claim),
        handover=HandOverOut.model_validate(decided.handover) if decided.handover else None,
    )


@router.post(
    "/support/claims/{claim_id}/reject",
    response_model=SupportClaimOut,
    responses=documented(401, 403, 404, 409, 422),
    tags=["support"],
)
async def support_reject(
    claim_id: s.Text, body: RejectIn, ctx: Ctx, actor: CurrentActor
) -> SupportClaimOut:
    return SupportClaimOut.model_validate(await claims.reject(ctx, actor, claim_id, body.reason))
