"""Personal access tokens under ``/api/v1/auth/tokens`` (sessions only)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from taskapi.api.account import mail_context
from taskapi.api.deps import db_session, settings
from taskapi.api.operation import Reply, operation
from taskapi.api.parsing import parse_id
from taskapi.db import utcnow
from taskapi.models import PersonalToken
from taskapi.schemas.tokens import TokenCreateBody, TokenCreated, TokenList
from taskapi.security import principal
from taskapi.services import auth as auth_service
from taskapi.services import notices
from taskapi.services import tokens as service

bp = Blueprint("tokens", __name__, url_prefix="/api/v1/auth/tokens")
TAGS = ("auth",)


def token_json(row: PersonalToken) -> dict[str, Any]:
    """The public fields of a token."""
    return {
        "id": row.id,
        "name": row.name,
        "scopes": row.scopes.split(),
        "prefix": row.prefix,
        "created_at": row.created_at,
        "last_used_at": row.last_used_at,
        "expires_at": row.expires_at,
    }


@bp.post("")
@operation(
    "Create a personal access token",
    tags=TAGS,
    body=TokenCreateBody,
    ok=(201, TokenCreated),
    errors={409: ("quota_exceeded",)},
    description=(
        "For scripts and curl: a long-lived token (tapi_...) with only the scopes it needs. "
        "The secret is in this answer only. Needs a session (a login's access token), never "
        "another personal token. At most TASKAPI_MAX_TOKENS_PER_USER (50) per user; a "
        "security notice is mailed. A password change or reset, and a disabled account, "
        "revoke every token."
    ),
)
def create_token(body: TokenCreateBody) -> Reply:
    """Mint a token; the answer carries its secret, once."""
    caller, db = principal(), db_session()
    email = auth_service.email_of(db, user_id=caller.user_id)
    row, secret = service.create(
        db,
        user_id=caller.user_id,
        name=body.name,
        scopes=list(body.scopes),
        expires_in_days=body.expires_in_days,
        now=utcnow(),
        max_tokens=settings().max_tokens_per_user,
        notice=notices.token_created(mail_context(), email, body.name, ", ".join(body.scopes)),
    )
    return Reply({**token_json(row), "token": secret}, 201)


@bp.get("")
@operation("This user's personal tokens", tags=TAGS, ok=(200, TokenList))
def list_tokens() -> dict[str, Any]:
    """Every token of the user (bounded), without secrets."""
    rows = service.list_for(db_session(), user_id=principal().user_id)
    return {"items": [token_json(row) for row in rows]}


@bp.delete("/<token_id>")
@operation(
    "Revoke a personal access token",
    tags=TAGS,
    ok=(204, None),
    errors=(404,),
    description="The token stops working at once, on every instance; another user's is 404.",
)
def revoke_token(token_id: str) -> None:
    """Delete one of the user's tokens."""
    service.revoke(db_session(), user_id=principal().user_id, token_id=parse_id(token_id))
