"""One error type for everything the API answers with a non-2xx, and its handler."""

import logging
import math
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)


class AppError(Exception):
    status_code = 400
    error = "bad_request"

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "detail": self.detail, **self.extra}


class Unauthorized(AppError):
    status_code = 401
    error = "unauthorized"


class BodyTooLarge(AppError):
    status_code = 413
    error = "body_too_large"


class NotFound(AppError):
    status_code = 404
    error = "not_found"


class Conflict(AppError):
    status_code = 409
    error = "conflict"


class NicepayRejected(AppError):
    status_code = 502
    error = "nicepay_error"


class NicepayDown(AppError):
    status_code = 502
    error = "nicepay_unavailable"


class NicepayTimeout(AppError):
    status_code = 504
    error = "nicepay_timeout"


class DatabaseUnavailable(AppError):
    status_code = 503
    error = "database_unavailable"


def install_error_handler(app: FastAPI) -> None:
    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AppError)
        headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
        return JSONResponse(exc.body(), status_code=exc.status_code, headers=headers)

    async def database_down(request: Request, exc: Exception) -> JSONResponse:
        log.error("database unavailable on %s %s: %r", request.method, request.url.path, exc)
        return await handle(
            request, DatabaseUnavailable("database unavailable; nothing was changed, retry")
        )

    async def invalid(_request: Request, exc: Exception) -> JSONResponse:
        # FastAPI's own shape; but a body may carry NaN or 1e400 (Python's json reads both),
        # which the error would echo and no JSON response can hold.
        assert isinstance(exc, RequestValidationError)
        return JSONResponse({"detail": _json_safe(jsonable_encoder(exc.errors()))}, 422)

    app.add_exception_handler(AppError, handle)
    app.add_exception_handler(RequestValidationError, invalid)
    for error in (SQLAlchemyError, OSError, TimeoutError):
        app.add_exception_handler(error, database_down)


def _json_safe(value: Any) -> Any:
    """`value` with every NaN or infinity replaced by its name as a string."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
