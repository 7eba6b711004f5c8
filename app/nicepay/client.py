"""One async client for NICEPAY V1's CVS endpoints: form-urlencoded in, JSON (loosely) out."""

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any, NamedTuple, Protocol, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from app.nicepay import tokens
from app.nicepay.codes import PAY_METHOD_CVS, RESULT_OK
from app.nicepay.schemas import (
    CancelRequest,
    CancelResponse,
    InquiryRequest,
    InquiryResponse,
    RegistrationRequest,
    RegistrationResponse,
    WireModel,
)

log = logging.getLogger(__name__)

REGISTER_PATH = "/nicepay/api/onePass.do"
INQUIRY_PATH = "/nicepay/api/onePassStatus.do"
CANCEL_PATH = "/nicepay/api/onePassAllCancel.do"

R = TypeVar("R", bound=BaseModel)


class NicepayError(Exception):
    """NICEPAY answered, with a resultCd other than 0000."""

    def __init__(self, result_cd: str, result_msg: str) -> None:
        super().__init__(f"NICEPAY {result_cd}: {result_msg}")
        self.result_cd = result_cd
        self.result_msg = result_msg


class NicepayUnavailable(Exception):
    """NICEPAY did not answer usefully: timeout, connection error, 5xx or garbage."""

    def __init__(self, reason: str, *, timed_out: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.timed_out = timed_out

    @classmethod
    def of(cls, exc: BaseException) -> "NicepayUnavailable":
        """A transport's failure: a timeout (any library's) or a failed connection."""
        if isinstance(exc, TimeoutError | httpx.TimeoutException):
            return cls(f"timed out ({type(exc).__name__})", timed_out=True)
        return cls(f"connection failed ({type(exc).__name__})")


def parse_body(text: str) -> dict[str, Any]:
    """NICEPAY's JSON, tolerating anything before the first `{` (a length prefix, REFERENCE §5.3)."""
    start = text.find("{")
    if start < 0:
        raise ValueError("no JSON object in the answer")
    value = json.loads(text[start:])
    if not isinstance(value, dict):
        raise ValueError("the answer is not a JSON object")
    return value


# A hook the service uses to time calls and count result codes (metrics), kept out of here.
CallObserver = Callable[[str, float, str], None]


class Answer(NamedTuple):
    status: int
    text: str


class FormPoster(Protocol):
    """Sends one form to NICEPAY: the answer, or NicepayUnavailable when none came."""

    async def post_form(self, path: str, form: dict[str, str]) -> Answer: ...

    async def aclose(self) -> None: ...


class HttpxPoster:
    """Over an httpx client: what the tests inject (httpx's mock and ASGI transports)."""

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def post_form(self, path: str, form: dict[str, str]) -> Answer:
        try:
            response = await self._http.post(path, data=form)
        except httpx.HTTPError as exc:
            raise NicepayUnavailable.of(exc) from exc
        return Answer(response.status_code, response.text)

    async def aclose(self) -> None:
        await self._http.aclose()


class NicepayClient:
    def __init__(
        self,
        http: httpx.AsyncClient | FormPoster,
        *,
        imid: str,
        merchant_key: str,
        observe: CallObserver | None = None,
        deadline_seconds: float = 30.0,
    ) -> None:
        self._poster = HttpxPoster(http) if isinstance(http, httpx.AsyncClient) else http
        # The poster times each read; this bounds the whole call (a trickling answer included).
        self._deadline = deadline_seconds
        self.imid = imid
        self._key = merchant_key
        self._observe = observe

    async def aclose(self) -> None:
        await self._poster.aclose()

    async def register(self, request: RegistrationRequest) -> RegistrationResponse:
        return await self._call(REGISTER_PATH, request, RegistrationResponse)

    def registration_token(self, reference_no: str, amt: int) -> str:
        return tokens.reference_token(self.imid, reference_no, amt, self._key)

    async def inquire(self, txid: str, reference_no: str, amt: int) -> InquiryResponse:
        request = InquiryRequest(
            iMid=self.imid,
            tXid=txid,
            referenceNo=reference_no,
            amt=str(amt),
            merchantToken=tokens.reference_token(self.imid, reference_no, amt, self._key),
        )
        return await self._call(INQUIRY_PATH, request, InquiryResponse, read=True)

    async def cancel(self, txid: str, reference_no: str, amt: int, reason: str) -> CancelResponse:
        request = CancelRequest(
            iMid=self.imid,
            tXid=txid,
            payMethod=PAY_METHOD_CVS,
            amt=str(amt),
            referenceNo=reference_no,
            cancelMsg=reason,
            merchantToken=tokens.txid_token(self.imid, txid, amt, self._key),
        )
        return await self._call(CANCEL_PATH, request, CancelResponse)

    async def _call(
        self, path: str, request: WireModel, model: type[R], *, read: bool = False
    ) -> R:
        form = request.form()
        started = time.perf_counter()
        result_cd = "unavailable"
        try:
            answer = await self._post(path, form, read)
            if answer.status >= 500:
                raise NicepayUnavailable(f"HTTP {answer.status}")
            try:
                body = parse_body(answer.text)
                parsed = model.model_validate(body)
            except (ValueError, ValidationError) as exc:
                log.warning("unparseable NICEPAY answer from %s (HTTP %s)", path, answer.status)
                raise NicepayUnavailable(f"unparseable answer (HTTP {answer.status})") from exc
            result_cd = str(body.get("resultCd") or "missing")
            if result_cd != RESULT_OK:
                raise NicepayError(result_cd, str(body.get("resultMsg") or ""))
            return parsed
        finally:
            if self._observe is not None:
                self._observe(path.rsplit("/", 1)[-1], time.perf_counter() - started, result_cd)

    async def _post(self, path: str, form: dict[str, str], read: bool) -> Answer:
        """The form posted within the deadline. A kept-alive connection that NICEPAY closed
        while it sat idle can be handed out before its close is seen (this worker was busy)
        and fails as it is used. A read (the status inquiry: it changes nothing) that failed
        on its connection is sent once more, on another; registration and cancel are not
        (NICEPAY may have acted on them): their callers answer "unavailable" and whoever sent
        them (the storefront, the operator) asks again."""
        try:
            async with asyncio.timeout(self._deadline):
                try:
                    return await self._poster.post_form(path, form)
                except NicepayUnavailable as exc:
                    if not read or exc.timed_out:
                        raise
                    log.info("NICEPAY %s: %s; asking again", path.rsplit("/", 1)[-1], exc.reason)
                    return await self._poster.post_form(path, form)
        except TimeoutError as exc:
            raise NicepayUnavailable.of(exc) from exc
