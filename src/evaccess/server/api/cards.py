"""RFID cards and other OCPP tokens: ``/api/organisations/{org_id}/cards`` and
``/api/cards/{card_id}``. A card number travels only in the body of the request that adds
it; every answer, URL and error names the card by its id and shows the number masked."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, status
from pydantic import BaseModel, Field

from evaccess.domain.tokens import MAX_ID_TOKEN, Answer, TokenStatus, TokenType
from evaccess.server.api import schemas as s
from evaccess.server.api.deps import Ctx, CurrentActor
from evaccess.server.api.problems import documented
from evaccess.server.services import tokens
from evaccess.server.services.tokens import CardView

router = APIRouter(prefix="/api", tags=["cards"], responses=documented(500))


class CardIn(s.In):
    user_id: s.Text = Field(max_length=36)
    type: TokenType
    number: s.Text = Field(min_length=1, max_length=MAX_ID_TOKEN + 8)
    """The number as the reader shows it (separators and case do not matter)."""
    group_id_token: s.Text | None = Field(default=None, max_length=20)
    label: s.Text | None = Field(default=None, max_length=100)
    expires_at: s.Instant | None = None


class CardPatch(s.In):
    status: TokenStatus | None = None
    expires_at: s.Instant | None = None
    clear_expiry: s.Flag = False
    label: s.Text | None = Field(default=None, max_length=100)
    group_id_token: s.Text | None = Field(default=None, max_length=20)


class CardOut(s.Out):
    id: str
    organisation_id: str
    user_id: str
    type: TokenType = Field(validation_alias=s.read_attr("type", "token_type"))
    masked: str
    """The last characters of the number, e.g. ``…E680``."""
    status: TokenStatus
    effective_status: Answer
    """What a charger is answered: ``Expired`` once ``expires_at`` passed."""
    expires_at: datetime | None
    group_id_token: str | None
    label: str | None
    created_at: datetime


class MasterPassIn(s.In):
    group_id: s.Text | None = Field(default=None, max_length=20)


class MasterPassOut(BaseModel):
    group_id: str | None


def _out(card: CardView) -> CardOut:
    return CardOut.model_validate(card)


@router.post(
    "/organisations/{org_id}/cards",
    responses=documented(401, 403, 404, 409, 422),
    response_model=CardOut,
    status_code=201,
)
async def add_card(org_id: s.Text, body: CardIn, ctx: Ctx, actor: CurrentActor) -> CardOut:
    """Register a member's card (admins; anyone their own). ``card_taken`` (409): the
    number is registered in the organisation tree already."""
    card = await tokens.add_card(
        ctx,
        actor,
        org_id,
        user_id=body.user_id,
        token_type=body.type,
        number=body.number,
        group_id_token=body.group_id_token,
        label=body.label,
        expires_at=body.expires_at,
    )
    return _out(card)


@router.get(
    "/organisations/{org_id}/cards",
    responses=documented(401, 403, 404, 422),
    response_model=list[CardOut],
)
async def list_cards(
    org_id: s.Text, ctx: Ctx, actor: CurrentActor, user_id: s.Text | None = None
) -> list[CardOut]:
    """The organisation's cards (admins), or ``?user_id=`` one member's (anyone their own)."""
    return [_out(c) for c in await tokens.list_cards(ctx, actor, org_id, user_id=user_id)]


@router.patch(
    "/cards/{card_id}", responses=documented(401, 403, 404, 409, 422), response_model=CardOut
)
async def update_card(card_id: s.Text, body: CardPatch, ctx: Ctx, actor: CurrentActor) -> CardOut:
    """Block (``status: Blocked``) or unblock, set or clear the expiry, relabel, regroup.
    Blocking or narrowing sends ClearCache to the chargers that may have it cached."""
    card = await tokens.update_card(
        ctx,
        actor,
        card_id,
        status=body.status,
        expires_at=body.expires_at,
        clear_expiry=body.clear_expiry,
        label=body.label,
        group_id_token=body.group_id_token,
    )
    return _out(card)


@router.delete(
    "/cards/{card_id}",
    responses=documented(401, 403, 404, 422),
    status_code=status.HTTP_204_NO_CONTENT,
)
async def delete_card(card_id: s.Text, ctx: Ctx, actor: CurrentActor) -> None:
    await tokens.delete_card(ctx, actor, card_id)


@router.put(
    "/organisations/{org_id}/master-pass-group",
    responses=documented(401, 403, 404, 422),
    response_model=MasterPassOut,
)
async def set_master_pass_group(
    org_id: s.Text, body: MasterPassIn, ctx: Ctx, actor: CurrentActor
) -> MasterPassOut:
    """The organisation's ``MasterPassGroupId`` (OCPP 2.0.1 C16; super-admins): cards of
    this group may stop any transaction at its chargers and start none."""
    return MasterPassOut(
        group_id=await tokens.set_master_pass_group(ctx, actor, org_id, body.group_id)
    )
