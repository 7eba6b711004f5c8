"""One error type for everything the API answers with a non-2xx, and its one handler.

Each kind of error is a subclass of AppError that names its status code and its stable
`error` code; an instance carries the human `detail` and any extra fields of the body.
"""

import logging
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)


class AppError(Exception):
    status_code: ClassVar[int] = 400
    error: ClassVar[str] = "bad_request"
    headers: ClassVar[dict[str, str] | None] = None

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "detail": self.detail, **self.extra}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status_code, headers=self.headers)


class Unauthorized(AppError):
    status_code = 401
    error = "unauthorized"
    headers = {"WWW-Authenticate": "Bearer"}


class BodyTooLarge(AppError):
    status_code = 413
    error = "body_too_large"


class NotFound(AppError):
    status_code = 404
    error = "not_found"


class Conflict(AppError):
    status_code = 409
    error = "conflict"


class RegistrationInProgress(Conflict):
    error = "registration_in_progress"


class DeliveryInProgress(Conflict):
    error = "delivery_in_progress"


class TooManyRequests(AppError):
    status_code = 429
    error = "too_many_requests"

    def __init__(self, detail: str, *, retry_after: int, **extra: Any) -> None:
        super().__init__(detail, retry_after=retry_after, **extra)
        self.retry_after = retry_after

    def response(self) -> JSONResponse:
        headers = {"Retry-After": str(self.retry_after)}
        return JSONResponse(self.body(), status_code=self.status_code, headers=headers)


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


# What escapes a request when the database is away (a driver error, a refused connection,
# a timeout): answered 503 rather than 500.
DATABASE_ERRORS = (SQLAlchemyError, OSError, TimeoutError)


def install_error_handler(app: FastAPI, database_errors: tuple[type[Exception], ...] = ()) -> None:
    """`database_errors`: the payments store's own "database unavailable" types, 503 too."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        if not isinstance(exc, AppError):
            log.error("database unavailable on %s %s: %r", request.method, request.url.path, exc)
            exc = DatabaseUnavailable("database unavailable; retry the request")
        return exc.response()

    for error in (AppError, *DATABASE_ERRORS, *database_errors):
        app.add_exception_handler(error, handle)
