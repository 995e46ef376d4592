"""Every failure the API answers with, as JSON ``{"error": ..., "status": ...}``.

Clients get a status that says whose fault it is (4xx: the request, 503: a store that does not
answer) and a sentence naming what was wrong; nothing ever reaches them as a traceback.
"""

from __future__ import annotations

import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

log = logging.getLogger("pricepipe.api")


class ApiError(Exception):
    """A request the API refuses, with the status, the message and any headers the client gets."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


class InvalidParameter(ApiError):
    """A parameter that does not parse or is out of range: 422, naming the parameter."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(422, f"parameter '{name}': {problem}")
        self.parameter = name


class UnknownSymbol(ApiError):
    def __init__(self, symbol: str) -> None:
        super().__init__(404, f"unknown symbol {symbol!r}: GET /symbols lists the known ones")


class StoreUnavailable(ApiError):
    """Cassandra did not answer in time; the request may succeed later."""

    def __init__(self, detail: str) -> None:
        super().__init__(503, f"the data store is unavailable right now ({detail}); try again shortly")


class StreamsFull(ApiError):
    """Every live-stream slot of this worker is taken; one frees when a client leaves."""

    def __init__(self, limit: int, retry_after_s: int) -> None:
        super().__init__(503, f"this API worker already serves {limit} live streams (PRICEPIPE_API_STREAMS_MAX); "
                              f"try again in {retry_after_s} s", {"Retry-After": str(retry_after_s)})


def error_response(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


async def api_error(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, ApiError)
    return error_response(error.status, error.message, error.headers)


async def http_error(request: Request, error: Exception) -> JSONResponse:
    """Starlette's own refusals (no such route, wrong method) in the same JSON shape."""
    assert isinstance(error, HTTPException)
    return error_response(error.status_code, str(error.detail))


async def unexpected_error(request: Request, error: Exception) -> JSONResponse:
    """A bug: logged with its traceback on the server, a plain sentence for the client."""
    log.exception("unexpected error answering %s %s", request.method, request.url.path)
    return error_response(500, "internal error; the server log has the details")


EXCEPTION_HANDLERS = {ApiError: api_error, HTTPException: http_error, Exception: unexpected_error}
