"""Accounts: ``/api/auth/*`` (log in, log out, change password), self sign-up
(``/api/users``) and ``/api/me``."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response, status

from evaccess.server.api import schemas as s
from evaccess.server.api.common import NO_STORE
from evaccess.server.api.deps import Ctx, CurrentActor, Token
from evaccess.server.api.problems import CLUSTER_UNAVAILABLE, documented
from evaccess.server.services import accounts, organisations

router = APIRouter(prefix="/api", responses=documented(500))


@router.post(
    "/auth/login",
    responses=documented(401, 422, 429, 503, notes=CLUSTER_UNAVAILABLE),
    response_model=s.TokenOut,
    tags=["auth"],
)
async def login(body: s.LoginIn, request: Request, response: Response, ctx: Ctx) -> s.TokenOut:
    client = request.client.host if request.client else "unknown"
    issued = await accounts.login(ctx, body.email, body.password, client=client)
    response.headers.update(NO_STORE)
    return s.TokenOut.model_validate(issued)


@router.post(
    "/auth/logout", responses=documented(401), status_code=status.HTTP_204_NO_CONTENT, tags=["auth"]
)
async def logout(ctx: Ctx, token: Token) -> None:
    await accounts.logout(ctx, token)


@router.post(
    "/auth/password",
    responses=documented(401, 422, 429, 503, notes=CLUSTER_UNAVAILABLE),
    status_code=status.HTTP_204_NO_CONTENT,
    tags=["auth"],
)
async def change_password(body: s.PasswordChangeIn, ctx: Ctx, actor: CurrentActor) -> None:
    """Change your password; all your sessions end (log in again)."""
    await accounts.change_password(ctx, actor, body.current_password, body.new_password)


@router.post(
    "/users",
    responses=documented(
        403, 422, notes={403: "Self sign-up is off on this server (`signup_disabled`)."}
    ),
    response_model=s.SignupOut,
    status_code=status.HTTP_202_ACCEPTED,
    tags=["auth"],
)
async def signup(body: s.SignupIn, ctx: Ctx) -> s.SignupOut:
    """Create your own account, where the server allows it (``EVACCESS_ALLOW_SIGNUP``; off
    by default: accounts then come from administrators and invitations). The answer is the
    same whether or not the address already has an account; log in to find out."""
    await accounts.sign_up(ctx, body.email, body.password)
    return s.SignupOut()


@router.get("/me", responses=documented(401), response_model=s.MeOut, tags=["auth"])
async def me(ctx: Ctx, actor: CurrentActor) -> s.MeOut:
    rows = await organisations.memberships_of(ctx, actor)
    return s.MeOut(
        id=actor.user_id,
        email=actor.email,
        is_system_admin=actor.is_system_admin,
        staff_role=actor.staff_role,
        organisations=[
            s.MembershipOut(organisation_id=o.id, name=o.name, parent_id=o.parent_id, role=r)
            for o, r in rows
        ],
    )
