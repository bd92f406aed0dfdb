"""Request-scoped dependencies: the context, the authenticated actor, the request id."""

from __future__ import annotations

import re
import secrets
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from evaccess.domain.errors import NotAuthenticated
from evaccess.server.context import Context
from evaccess.server.services import accounts
from evaccess.server.services.relations import Actor

_bearer = HTTPBearer(auto_error=False)
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def new_request_id(header: str | None) -> str:
    if header and _REQUEST_ID.match(header):
        return header
    return secrets.token_hex(8)


def get_context(request: Request) -> Context:
    ctx = request.app.state.context
    assert isinstance(ctx, Context)
    return ctx


def bearer_token(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise NotAuthenticated("log in first: Authorization: Bearer <token>")
    return credentials.credentials


async def current_actor(
    request: Request,
    ctx: Annotated[Context, Depends(get_context)],
    token: Annotated[str, Depends(bearer_token)],
) -> Actor:
    return await accounts.authenticate(ctx, token, request_id=request.state.request_id)


Ctx = Annotated[Context, Depends(get_context)]
CurrentActor = Annotated[Actor, Depends(current_actor)]
Token = Annotated[str, Depends(bearer_token)]
