"""Register, login, refresh, logout, and the access-token dependency.

A login opens a session (a refresh-token family). Each refresh rotates the
session to a new generation; refresh tokens carry the generation they were
issued for. A token of the current generation refreshes; one of the previous
generation still does for REFRESH_GRACE_SECONDS after the rotation (two tabs,
a retried request), and gets a token of the current generation. Any older
token, or the previous one after the grace, was copied: the whole session is
revoked (reuse detection).

Every authenticated request checks that its access token's session is still
open, so logout and reuse detection end the session's access tokens at once.

Login and register are throttled per client address and per account
(``dynoserver.throttle``); their password hashing runs in its own bounded pool
(``dynoserver.passwords``), which answers 503 rather than queue without bound.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime, timedelta, timezone

from fastapi import APIRouter, Depends, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from dynoserver import throttle, tokens
from dynoserver.db import get_db, with_session
from dynoserver.errors import ApiError, error_responses, unauthorized
from dynoserver.limits import JsonGuardRoute
from dynoserver.models import Session as AuthSession
from dynoserver.models import User
from dynoserver.passwords import Overloaded
from dynoserver.schemas import Credentials, RefreshRequest, TokenPair, UserOut

log = logging.getLogger("dynoserver.auth")
router = APIRouter(prefix="/auth", tags=["auth"], route_class=JsonGuardRoute)
_bearer = HTTPBearer(auto_error=False)

# Also set as an httpOnly cookie, so a browser client never handles it in JS.
REFRESH_COOKIE = "dyno_refresh"
# Fetch metadata values a browser sends for requests the page itself made.
_SAME_ORIGIN_SITES = ("same-origin", "none")


def current_user_id(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),
    db: Session = Depends(get_db),
) -> uuid.UUID:
    """Dependency: the user id of a valid access token whose session is still open.

    Shares the request's database session, so the check costs one indexed
    query on a connection the endpoint uses anyway.
    """
    claims = _access_claims(request, credentials)
    _require_open_session(db, claims)
    return claims.user_id


async def uploader_id(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)
) -> uuid.UUID:
    """``current_user_id`` for the streaming upload: its check holds no connection during the transfer."""
    claims = _access_claims(request, credentials)
    await run_in_threadpool(_check_in_own_session, request, claims)
    return claims.user_id


def _access_claims(request: Request, credentials: HTTPAuthorizationCredentials | None) -> tokens.TokenClaims:
    if credentials is None:
        raise unauthorized("a bearer access token is required")
    try:
        return tokens.verify(request.app.state.keys.current, "access", credentials.credentials)
    except tokens.InvalidToken:
        raise unauthorized("the access token is invalid or expired") from None


def _check_in_own_session(request: Request, claims: tokens.TokenClaims) -> None:
    with request.app.state.session_factory() as db:
        _require_open_session(db, claims)


def _require_open_session(db: Session, claims: tokens.TokenClaims) -> None:
    open_session = db.scalar(
        select(AuthSession.id).where(
            AuthSession.id == claims.session_id,
            AuthSession.user_id == claims.user_id,
            AuthSession.revoked_at.is_(None),
            AuthSession.expires_at > func.now(),
        )
    )
    if open_session is None:
        # Also a deleted account: its sessions went with it.
        raise unauthorized("the session has ended; log in again")


@router.post("/register", status_code=201, response_model=UserOut, responses=error_responses(409, 429, 503))
async def register(body: Credentials, request: Request) -> User:
    async with _refusals_answered_late(request):
        _shed_if_saturated(request)
        account = throttle.account_key(body.email)
        await run_in_threadpool(with_session, request, _admit, request, account)
        password_hash = await _hash(request, body.password)
    return await run_in_threadpool(with_session, request, _insert_user, request, body.email, password_hash, account)


@router.post("/login", response_model=TokenPair, responses=error_responses(401, 429, 503))
async def login(body: Credentials, request: Request, response: Response) -> TokenPair:
    passwords = request.app.state.passwords
    async with _refusals_answered_late(request):
        _shed_if_saturated(request)
        account = throttle.account_key(body.email)
        user = await run_in_threadpool(with_session, request, _admitted_user, request, body.email, account)
        try:
            matches = await passwords.verify(user.password_hash if user else None, body.password)
        except Overloaded:
            raise _busy() from None
    if not matches:
        await run_in_threadpool(with_session, request, _count_failure, request, account)
        raise unauthorized("wrong email or password")
    new_hash = await _hash(request, body.password) if passwords.needs_rehash(user.password_hash) else None
    return await run_in_threadpool(with_session, request, _logged_in, request, response, user.id, new_hash, account)


@router.post("/refresh", response_model=TokenPair, responses=error_responses(401, 403))
def refresh(
    request: Request, response: Response, body: RefreshRequest | None = None, db: Session = Depends(get_db)
) -> TokenPair:
    token = _refresh_token_from(body, request)
    claims = _verified_refresh_claims(request, token)
    session = db.get(AuthSession, claims.session_id, with_for_update=True)
    now = _now()
    if session is None or session.user_id != claims.user_id or session.revoked_at or session.expires_at <= now:
        raise unauthorized("the session has ended; log in again")
    verdict = _refresh_verdict(request, session, claims, token, now)
    if verdict == "reused":
        session.revoked_at = now
        db.commit()
        log.warning("refresh token reuse detected; session %s revoked", session.id)
        raise unauthorized("the refresh token was already used; the session is revoked")
    if verdict == "grace":
        db.commit()  # nothing changed: the lock is released, the session keeps its generation
        return _token_pair(request, response, session)
    return _rotate(db, request, response, session, now)


@router.post("/logout", status_code=204, responses=error_responses(401, 403))
def logout(request: Request, body: RefreshRequest | None = None, db: Session = Depends(get_db)) -> Response:
    claims = _verified_refresh_claims(request, _refresh_token_from(body, request))
    session = db.get(AuthSession, claims.session_id)
    if session is not None and session.user_id == claims.user_id and session.revoked_at is None:
        session.revoked_at = _now()
        db.commit()
    response = Response(status_code=204)
    response.delete_cookie(REFRESH_COOKIE, path="/auth")
    return response


@router.get("/me", response_model=UserOut, responses=error_responses(401))
def me(user_id: uuid.UUID = Depends(current_user_id), db: Session = Depends(get_db)) -> User:
    user = db.get(User, user_id)
    if user is None:
        raise unauthorized("the account no longer exists")
    return user


# -- login and register ------------------------------------------------------------------


@asynccontextmanager
async def _refusals_answered_late(request: Request) -> AsyncIterator[None]:
    """Answer a 429 or 503 only after AUTH_REFUSAL_DELAY_MS.

    A flooding client that ignores Retry-After would otherwise turn each cheap
    refusal into its next request at once, and keep the event loop busy with
    them. Waiting here holds no thread and no connection to the database.
    """
    try:
        yield
    except ApiError as exc:
        if exc.status in (429, 503):
            await asyncio.sleep(request.app.state.settings.auth_refusal_delay_ms / 1000)
        raise


def _shed_if_saturated(request: Request) -> None:
    # Before any other work: under a flood, a refusal must cost next to nothing.
    if request.app.state.passwords.saturated:
        raise _busy()


async def _hash(request: Request, password: str) -> str:
    try:
        return await request.app.state.passwords.hash(password)
    except Overloaded:
        raise _busy() from None


def _busy() -> ApiError:
    return ApiError(
        503, "busy", "too many password checks in progress; retry shortly", headers={"Retry-After": "1"}
    )


def _admit(db: Session, request: Request, account: str) -> None:
    """Count the attempt against the client address; refuse a blocked address or account (429)."""
    settings, limits = request.app.state.settings, request.app.state.throttle
    client = request.client
    verdicts = (
        limits.hit(db, throttle.address_key(client.host if client else None), settings.auth_address_attempts),
        limits.check(db, account, settings.auth_account_failures),
    )
    for verdict in verdicts:
        if not verdict.allowed:
            raise ApiError(
                429, "too_many_attempts", f"too many attempts; retry in {verdict.retry_after} s",
                headers={"Retry-After": str(verdict.retry_after)},
            )  # fmt: skip


def _admitted_user(db: Session, request: Request, email: str, account: str) -> User | None:
    _admit(db, request, account)
    user = db.scalar(select(User).where(User.email == email))
    db.commit()  # give the connection back to the pool while argon2 runs
    return user


def _count_failure(db: Session, request: Request, account: str) -> None:
    request.app.state.throttle.hit(db, account, request.app.state.settings.auth_account_failures)


def _insert_user(db: Session, request: Request, email: str, password_hash: str, account: str) -> User:
    user = User(email=email, password_hash=password_hash)
    db.add(user)
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        _count_failure(db, request, account)  # probing which emails exist counts against the account
        raise ApiError(409, "email_taken", "an account with this email already exists") from None
    return user


def _logged_in(
    db: Session, request: Request, response: Response, user_id: uuid.UUID, new_hash: str | None, account: str
) -> TokenPair:
    if new_hash is not None:
        db.get(User, user_id).password_hash = new_hash
    request.app.state.throttle.clear(db, account)  # earlier typos no longer count
    return _open_session(db, request, response, user_id)


# -- sessions --------------------------------------------------------------------------


def _refresh_verdict(
    request: Request, session: AuthSession, claims: tokens.TokenClaims, token: str, now: datetime
) -> str:
    """"rotate" (the current token), "grace" (the previous one, just rotated) or "reused"."""
    if claims.generation is None:
        # Issued before generations existed: only the very latest token is valid.
        return "rotate" if hmac.compare_digest(session.token_hash, _token_hash(token)) else "reused"
    if claims.generation == session.refresh_generation:
        return "rotate"
    grace = timedelta(seconds=request.app.state.settings.refresh_grace_seconds)
    just_rotated = session.rotated_at is not None and now - session.rotated_at <= grace
    if claims.generation == session.refresh_generation - 1 and just_rotated:
        return "grace"
    return "reused"


def _open_session(db: Session, request: Request, response: Response, user_id: uuid.UUID) -> TokenPair:
    settings = request.app.state.settings
    client = request.client
    session = AuthSession(
        id=uuid.uuid4(),
        user_id=user_id,
        token_hash="",
        refresh_generation=0,
        expires_at=_now() + timedelta(seconds=settings.refresh_token_ttl_seconds),
        user_agent=(request.headers.get("user-agent") or "")[:512].replace("\x00", "") or None,
        ip=client.host[:64] if client else None,
    )
    pair = _token_pair(request, response, session)
    session.token_hash = _token_hash(pair.refresh_token)
    db.add(session)
    db.commit()
    return pair


def _rotate(db: Session, request: Request, response: Response, session: AuthSession, now: datetime) -> TokenPair:
    settings = request.app.state.settings
    session.refresh_generation += 1
    session.rotated_at = session.last_used_at = now
    session.expires_at = now + timedelta(seconds=settings.refresh_token_ttl_seconds)
    pair = _token_pair(request, response, session)
    session.token_hash = _token_hash(pair.refresh_token)
    db.commit()
    return pair


def _token_pair(request: Request, response: Response, session: AuthSession) -> TokenPair:
    """A new access token and a refresh token of the session's current generation."""
    settings, keyset = request.app.state.settings, request.app.state.keys.current
    refresh_token = tokens.issue(
        keyset, "refresh", session.user_id, session.id, settings.refresh_token_ttl_seconds, session.refresh_generation
    )
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
    access_token = tokens.issue(keyset, "access", session.user_id, session.id, ttl)
    return TokenPair(access_token=access_token, refresh_token=refresh_token, expires_in=ttl)


def _refresh_token_from(body: RefreshRequest | None, request: Request) -> str:
    if body is not None and body.refresh_token:
        return body.refresh_token
    token = request.cookies.get(REFRESH_COOKIE)
    if not token:
        raise unauthorized("a refresh token is required (body or cookie)")
    # A cookie is sent by the browser on its own: only the front end's pages may use it.
    _require_frontend_origin(request)
    return token


def _require_frontend_origin(request: Request) -> None:
    """Refuse a cookie-authenticated request that a browser made for another origin (CSRF).

    Browsers send ``Origin`` with every POST (and ``Sec-Fetch-Site``); clients
    that send neither are not browsers, and have no ambient cookie to abuse.
    """
    origin = request.headers.get("origin")
    site = request.headers.get("sec-fetch-site")
    if origin is not None:
        allowed = origin == request.app.state.settings.frontend_url
    else:
        allowed = site is None or site in _SAME_ORIGIN_SITES
    if not allowed:
        raise ApiError(403, "forbidden_origin", "the refresh cookie is accepted only from the front end's origin")


def _verified_refresh_claims(request: Request, token: str) -> tokens.TokenClaims:
    try:
        return tokens.verify(request.app.state.keys.current, "refresh", token)
    except tokens.InvalidToken:
        raise unauthorized("the refresh token is invalid or expired") from None


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _now() -> datetime:
    return datetime.now(timezone.utc)
