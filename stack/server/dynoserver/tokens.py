"""Issue and verify HS256 JWTs with the keys of a KeySet.

Claims: ``sub`` (user id), ``sid`` (session id), ``typ`` (access|refresh),
``iat``, ``exp`` and, for refresh tokens, a random ``jti`` so that every
rotation yields a distinct token, and ``gen``: the session's refresh
generation. The header's ``kid`` picks the verifying key.
"""

from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass

import jwt

from dynoserver.keys import KeySet

ALGORITHM = "HS256"


class InvalidToken(Exception):
    """The token is malformed, expired, of the wrong type or signed by an unknown key."""


@dataclass(frozen=True)
class TokenClaims:
    user_id: uuid.UUID
    session_id: uuid.UUID
    expires_at: int
    generation: int | None = None  # refresh tokens: the session's rotation count when issued


def issue(
    keyset: KeySet,
    purpose: str,
    user_id: uuid.UUID,
    session_id: uuid.UUID,
    ttl_seconds: int,
    generation: int | None = None,
) -> str:
    key = keyset.ring(purpose).signing
    now = int(time.time())
    claims = {"sub": str(user_id), "sid": str(session_id), "typ": purpose, "iat": now, "exp": now + ttl_seconds}
    if purpose == "refresh":
        claims["jti"] = secrets.token_urlsafe(16)
    if generation is not None:
        claims["gen"] = generation
    return jwt.encode(claims, key.secret, algorithm=ALGORITHM, headers={"kid": key.kid})


def verify(keyset: KeySet, purpose: str, token: str) -> TokenClaims:
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        key = keyset.ring(purpose).by_kid.get(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("unknown signing key")
        claims = jwt.decode(
            token, key.secret, algorithms=[ALGORITHM], options={"require": ["sub", "sid", "typ", "iat", "exp"]}
        )
        if claims["typ"] != purpose:
            raise InvalidToken("wrong token type")
        generation = claims.get("gen")
        if generation is not None and (not isinstance(generation, int) or isinstance(generation, bool)):
            raise InvalidToken("malformed generation")
        return TokenClaims(uuid.UUID(claims["sub"]), uuid.UUID(claims["sid"]), int(claims["exp"]), generation)
    except (jwt.PyJWTError, ValueError, TypeError, AttributeError) as exc:
        raise InvalidToken(type(exc).__name__) from None
