"""The login step of a browser: a key in a header once, a session cookie from then on.

A browser's ``EventSource`` (the chart's live stream) cannot send headers, and a key in a URL
ends up in logs and the browser's history. So the page at ``GET /login`` sends the key once as the
``X-API-Key`` header of ``POST /login``, which answers with a cookie holding a session token, not
the key: HttpOnly (no script reads it), SameSite=Strict (no other site's page makes the browser
send it), Secure when the API is served over https. ``POST /logout`` ends the session.

Routes only when the API requires keys (``PRICEPIPE_API_KEY`` or ``PRICEPIPE_API_AUTH``).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from api.auth import HOW, PUBLIC, Access
from api.chart import STATIC_DIR
from api.errors import ApiError
from api.keys import COOKIE, KeyRing
from pricepipe_assets.storage.api_keys import SESSION_TTL_S


async def login_page(request: Request) -> FileResponse:
    return FileResponse(STATIC_DIR / "login.html", media_type="text/html")


async def login(request: Request) -> Response:
    """204 with the session cookie for a key of the ``X-API-Key`` header; 401 for any other."""
    keys: KeyRing = request.app.state.keys
    secret = request.headers.get("x-api-key")
    key = await keys.by_secret(secret) if secret else None
    if key is None:
        raise ApiError(401, f"missing, wrong or revoked API key: {HOW}", {"WWW-Authenticate": "X-API-Key"})
    response = Response(status_code=204, headers={"Cache-Control": "no-store"})
    response.set_cookie(COOKIE, await keys.open_session(key), max_age=SESSION_TTL_S, path="/",
                        secure=request.url.scheme == "https", httponly=True, samesite="strict")
    return response


async def logout(request: Request) -> Response:
    keys: KeyRing = request.app.state.keys
    await keys.close_session(request.scope)
    response = Response(status_code=204, headers={"Cache-Control": "no-store"})
    response.delete_cookie(COOKIE, path="/", secure=request.url.scheme == "https", httponly=True, samesite="strict")
    return response


ROUTES: tuple[Access, ...] = (
    (Route("/login", login_page, methods=["GET"]), PUBLIC),
    (Route("/login", login, methods=["POST"]), PUBLIC),
    (Route("/logout", logout, methods=["POST"]), PUBLIC),
)
