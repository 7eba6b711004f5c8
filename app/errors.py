"""One error type for everything the API answers with a non-2xx, and its handler."""

import logging
from typing import Any

from fastapi import FastAPI, Request
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

    app.add_exception_handler(AppError, handle)
    for error in (SQLAlchemyError, OSError, TimeoutError):
        app.add_exception_handler(error, database_down)
