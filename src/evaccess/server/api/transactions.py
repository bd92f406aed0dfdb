"""Charging sessions: a charger's (``/api/chargers/{charger_id}/transactions``) and your
own (``/api/me/transactions``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from evaccess.server.api import schemas as s
from evaccess.server.api.deps import Ctx, CurrentActor
from evaccess.server.api.problems import documented
from evaccess.server.services import transactions

router = APIRouter(prefix="/api", responses=documented(500))


def _transaction(view: transactions.TransactionView) -> s.TransactionOut:
    return s.TransactionOut.model_validate(view)


@router.get(
    "/chargers/{charger_id}/transactions",
    responses=documented(401, 404, 422),
    response_model=list[s.TransactionOut],
    tags=["transactions"],
)
async def charger_transactions(
    charger_id: s.Text,
    ctx: Ctx,
    actor: CurrentActor,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[s.TransactionOut]:
    """A charger's charging sessions: all for its owner and admins, else your own."""
    views = await transactions.for_charger(ctx, actor, charger_id, limit=limit)
    return [_transaction(v) for v in views]


@router.get(
    "/me/transactions",
    responses=documented(401, 422),
    response_model=list[s.TransactionOut],
    tags=["transactions"],
)
async def my_transactions(
    ctx: Ctx, actor: CurrentActor, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> list[s.TransactionOut]:
    """Your own charging sessions, at every charger."""
    return [_transaction(v) for v in await transactions.for_user(ctx, actor, limit=limit)]
