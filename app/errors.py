"""Every non-2xx answer is `{"error": <code>, "detail": ...}` (FastAPI's 422 keeps its list
of problems as `detail`, with `"error": "validation_error"` beside it). Each AppError subclass
names its status and stable `error` code; an instance carries `detail` and any extra fields.
"""

import logging
import math
from http import HTTPStatus
from typing import Any, ClassVar

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.utils import is_body_allowed_for_status_code
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from app.nicepay.client import NicepayError, NicepayUnavailable

log = logging.getLogger(__name__)


class AppError(Exception):
    status_code: ClassVar[int] = 400
    error: ClassVar[str] = "bad_request"
    headers: dict[str, str] | None = None

    def __init__(self, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extra = extra

    def response(self) -> JSONResponse:
        body = {"error": self.error, "detail": self.detail, **self.extra}
        return JSONResponse(body, status_code=self.status_code, headers=self.headers)


class ErrorBody(BaseModel):
    """The body of every error answer (OpenAPI's schema for them)."""

    model_config = ConfigDict(extra="allow")  # e.g. nicepay_code, reference_no, status

    error: str
    detail: Any


def documented(descriptions: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` for a route's error answers: each status, what it means, and
    ErrorBody as its schema (FastAPI adds the 422 of any route that validates input)."""
    return {
        status: {"model": ErrorBody, "description": description}
        for status, description in descriptions.items()
    }


# What every storefront route may answer (StorefrontGate, the database handler below).
UNAUTHORIZED = {401: "Missing or wrong bearer key (`unauthorized`)"}
BODY_TOO_LARGE = {413: "Body over 64 KiB (`body_too_large`)"}
DATABASE_DOWN = {503: "Database unavailable or past its deadline; retry (`database_unavailable`)"}


class InvalidJson(AppError):
    error = "invalid_json"


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
        self.headers = {"Retry-After": str(retry_after)}


class NicepayRejected(AppError):
    status_code = 502
    error = "nicepay_error"


class NicepayDown(AppError):
    status_code = 502
    error = "nicepay_unavailable"


class NicepayTimeout(AppError):
    status_code = 504
    error = "nicepay_timeout"


def nicepay_failed(exc: NicepayError | NicepayUnavailable, what: str) -> AppError:
    """NICEPAY's failure on `what` (the cancel, the status inquiry) as the API answers it:
    502 with its resultCd when it refused, 504 when it did not answer in time, 502 when it
    answered nothing usable. The payment is unchanged."""
    if isinstance(exc, NicepayError):
        return NicepayRejected(
            exc.result_msg or f"NICEPAY refused {what}", nicepay_code=exc.result_cd
        )
    error = NicepayTimeout if exc.timed_out else NicepayDown
    return error(f"NICEPAY did not answer {what} ({exc.reason}); the payment is unchanged")


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

    async def http_error(_request: Request, exc: Exception) -> Response:
        """Starlette's and FastAPI's own: unknown path, wrong method, unparseable body."""
        assert isinstance(exc, HTTPException)
        if not is_body_allowed_for_status_code(exc.status_code):
            return Response(status_code=exc.status_code, headers=exc.headers)
        # FastAPI raises a bare 400 only for a body it cannot decode (not UTF-8, too deep).
        error = "invalid_json" if exc.status_code == 400 else _code(exc.status_code)
        return JSONResponse(
            {"error": error, "detail": exc.detail}, status_code=exc.status_code, headers=exc.headers
        )

    async def invalid_request(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = exc.errors()
        for problem in errors:
            if problem.get("type") == "json_invalid":  # `{"reference_no":` is not JSON at all
                where = problem["loc"][-1] if problem.get("loc") else "?"
                why = (problem.get("ctx") or {}).get("error", "JSON decode error")
                return InvalidJson(f"body is not valid JSON: {why} at position {where}").response()
        # A body may carry NaN or 1e400 (Python's json reads both), which the error would
        # echo and no JSON response can hold.
        body = {"error": "validation_error", "detail": _json_safe(jsonable_encoder(errors))}
        return JSONResponse(body, status_code=422)

    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid_request)
    for error in (AppError, *DATABASE_ERRORS, *database_errors):
        app.add_exception_handler(error, handle)


def _code(status: int) -> str:
    """404 -> not_found, 405 -> method_not_allowed."""
    try:
        return HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        return "error"


def _json_safe(value: Any) -> Any:
    """`value` with every NaN or infinity replaced by its name as a string."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_safe(v) for v in value]
    return value
