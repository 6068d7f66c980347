"""The API server with the access check of before issue 8 (the JWT alone, no session
query): bench/api_load.py's baseline for what the per-request session check costs.

    uvicorn bench.jwt_only_app:create_app --factory
"""

# No ``from __future__ import annotations``: FastAPI reads the dependency's
# annotations, and these names are local to the factory.


def create_app():
    import uuid

    from fastapi import Depends, Request
    from fastapi.security import HTTPAuthorizationCredentials

    from dynoserver import auth
    from dynoserver.app import create_app as create_dyno_app

    async def jwt_only(
        request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(auth._bearer)
    ) -> uuid.UUID:
        return auth._access_claims(request, credentials).user_id

    app = create_dyno_app()
    app.dependency_overrides[auth.current_user_id] = jwt_only
    return app
