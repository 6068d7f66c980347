"""Register, login, refresh, logout, and the access-token dependency.

A login opens a session (a refresh-token family). Each refresh replaces the
session's token: only the newest refresh token is valid, and presenting an
older one means it was copied, so the whole session is revoked (reuse
detection). Access tokens are not checked against the session: they are
short-lived by design.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from datetime import datetime, timedelta, timezone

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from dynoserver import tokens
from dynoserver.db import get_db
from dynoserver.errors import ApiError, unauthorized
from dynoserver.keys import KeySet
from dynoserver.models import Session as AuthSession
from dynoserver.models import User
from dynoserver.schemas import Credentials, RefreshRequest, TokenPair, UserOut

log = logging.getLogger("dynoserver.auth")
router = APIRouter(prefix="/auth", tags=["auth"])
_bearer = HTTPBearer(auto_error=False)

# Also set as an httpOnly cookie, so a browser client never handles it in JS.
REFRESH_COOKIE = "dyno_refresh"


async def current_user_id(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> uuid.UUID:
    """Dependency: the user id from a valid access token (async: no I/O, no thread hop)."""
    if credentials is None:
        raise unauthorized("a bearer access token is required")
    try:
        return tokens.verify(request.app.state.keys.current, "access", credentials.credentials).user_id
    except tokens.InvalidToken:
        raise unauthorized("the access token is invalid or expired") from None


@router.post("/register", status_code=201, response_model=UserOut)
def register(body: Credentials, request: Request, db: Session = Depends(get_db)) -> User:
    user = User(email=body.email, password_hash=request.app.state.passwords.hash(body.password))
    db.add(user)
    try:
        db.commit()
    except IntegrityError:
        raise ApiError(409, "email_taken", "an account with this email already exists") from None
    return user


@router.post("/login", response_model=TokenPair)
def login(body: Credentials, request: Request, response: Response, db: Session = Depends(get_db)) -> TokenPair:
    user = db.scalar(select(User).where(User.email == body.email))
    db.commit()  # give the connection back to the pool while argon2 runs
    passwords = request.app.state.passwords
    if not passwords.verify(user.password_hash if user else None, body.password):
        raise unauthorized("wrong email or password")
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash(body.password)
    return _open_session(db, request, response, user.id)


@router.post("/refresh", response_model=TokenPair)
def refresh(
    request: Request, response: Response, body: RefreshRequest | None = None, db: Session = Depends(get_db)
) -> TokenPair:
    token = _refresh_token_from(body, request)
    claims = _verified_refresh_claims(request, token)
    session = db.get(AuthSession, claims.session_id, with_for_update=True)
    now = _now()
    if session is None or session.user_id != claims.user_id or session.revoked_at or session.expires_at <= now:
        raise unauthorized("the session has ended; log in again")
    if not hmac.compare_digest(session.token_hash, _token_hash(token)):
        session.revoked_at = now
        db.commit()
        log.warning("refresh token reuse detected; session %s revoked", session.id)
        raise unauthorized("the refresh token was already used; the session is revoked")
    return _rotate(db, request, response, session, now)


@router.post("/logout", status_code=204)
def logout(request: Request, body: RefreshRequest | None = None, db: Session = Depends(get_db)) -> Response:
    claims = _verified_refresh_claims(request, _refresh_token_from(body, request))
    session = db.get(AuthSession, claims.session_id)
    if session is not None and session.user_id == claims.user_id and session.revoked_at is None:
        session.revoked_at = _now()
        db.commit()
    response = Response(status_code=204)
    response.delete_cookie(REFRESH_COOKIE, path="/auth")
    return response


@router.get("/me", response_model=UserOut)
def me(user_id: uuid.UUID = Depends(current_user_id), db: Session = Depends(get_db)) -> User:
    user = db.get(User, user_id)
    if user is None:
        raise unauthorized("the account no longer exists")
    return user


def _open_session(db: Session, request: Request, response: Response, user_id: uuid.UUID) -> TokenPair:
    settings, keyset = request.app.state.settings, request.app.state.keys.current
    session_id = uuid.uuid4()
    refresh_token = tokens.issue(keyset, "refresh", user_id, session_id, settings.refresh_token_ttl_seconds)
    client = request.client
    db.add(
        AuthSession(
            id=session_id,
            user_id=user_id,
            token_hash=_token_hash(refresh_token),
            expires_at=_now() + timedelta(seconds=settings.refresh_token_ttl_seconds),
            user_agent=(request.headers.get("user-agent") or "")[:512].replace("\x00", "") or None,
            ip=client.host[:64] if client else None,
        )
    )
    db.commit()
    return _token_pair(request, response, keyset, user_id, session_id, refresh_token)


def _rotate(db: Session, request: Request, response: Response, session: AuthSession, now: datetime) -> TokenPair:
    settings, keyset = request.app.state.settings, request.app.state.keys.current
    refresh_token = tokens.issue(keyset, "refresh", session.user_id, session.id, settings.refresh_token_ttl_seconds)
    session.token_hash = _token_hash(refresh_token)
    session.last_used_at = now
    session.expires_at = now + timedelta(seconds=settings.refresh_token_ttl_seconds)
    db.commit()
    return _token_pair(request, response, keyset, session.user_id, session.id, refresh_token)


def _token_pair(
    request: Request, response: Response, keyset: KeySet, user_id: uuid.UUID, session_id: uuid.UUID, refresh_token: str
) -> TokenPair:
    settings = request.app.state.settings
    response.set_cookie(
        REFRESH_COOKIE,
        refresh_token,
        max_age=settings.refresh_token_ttl_seconds,
        path="/auth",
        httponly=True,
        secure=settings.frontend_url.startswith("https://"),
        samesite="lax",
    )
    ttl = settings.access_token_ttl_seconds
    access_token = tokens.issue(keyset, "access", user_id, session_id, ttl)
    return TokenPair(access_token=access_token, refresh_token=refresh_token, expires_in=ttl)


def _refresh_token_from(body: RefreshRequest | None, request: Request) -> str:
    token = (body.refresh_token if body else None) or request.cookies.get(REFRESH_COOKIE)
    if not token:
        raise unauthorized("a refresh token is required (body or cookie)")
    return token


def _verified_refresh_claims(request: Request, token: str) -> tokens.TokenClaims:
    try:
        return tokens.verify(request.app.state.keys.current, "refresh", token)
    except tokens.InvalidToken:
        raise unauthorized("the refresh token is invalid or expired") from None


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(timezone.utc)
