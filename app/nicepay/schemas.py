"""NICEPAY V1 wire models. Field names are NICEPAY's own; every value on the wire is text."""

from pydantic import BaseModel, ConfigDict


class WireModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, coerce_numbers_to_str=True)

    def form(self) -> dict[str, str]:
        """The form-urlencoded body: every set field as text, None left out."""
        return {k: str(v) for k, v in self.model_dump(exclude_none=True).items()}


class RegistrationRequest(WireModel):
    """onePass.do (REFERENCE.md §1.2)."""

    iMid: str
    payMethod: str
    currency: str
    amt: str
    referenceNo: str
    goodsNm: str
    billingNm: str
    billingPhone: str
    billingEmail: str
    billingAddr: str | None = None
    # Optional in one NICEPAY table, refused when empty in practice (9025-9028, REFERENCE §9).
    billingCity: str
    billingState: str
    billingPostCd: str
    billingCountry: str
    deliveryNm: str | None = None
    deliveryPhone: str | None = None
    deliveryEmail: str | None = None
    deliveryAddr: str | None = None
    deliveryCity: str | None = None
    deliveryState: str | None = None
    deliveryPostCd: str | None = None
    deliveryCountry: str | None = None
    callBackUrl: str
    dbProcessUrl: str
    vat: str = "0"
    fee: str = "0"
    notaxAmt: str = "0"
    description: str
    merchantToken: str
    reqDt: str | None = None
    reqTm: str | None = None
    userIP: str
    cartData: str = "{}"
    mitraCd: str
    payValidDt: str | None = None
    payValidTm: str | None = None


class _Result(WireModel):
    resultCd: str | None = None
    resultMsg: str | None = None


class _CodeAnswer(_Result):
    """What registration and status inquiry both answer about a code."""

    tXid: str | None = None
    referenceNo: str | None = None
    payMethod: str | None = None
    amt: str | None = None
    currency: str | None = None
    mitraCd: str | None = None
    payNo: str | None = None
    payValidDt: str | None = None
    payValidTm: str | None = None
    transDt: str | None = None
    transTm: str | None = None


class RegistrationResponse(_CodeAnswer):
    """V1 registration names the amount `amount`; `amt` is accepted too."""

    amount: str | None = None


class InquiryRequest(WireModel):
    """onePassStatus.do (REFERENCE.md §2.1)."""

    iMid: str
    tXid: str
    referenceNo: str
    amt: str
    merchantToken: str


class InquiryResponse(_CodeAnswer):
    iMid: str | None = None
    cancelAmt: str | None = None
    status: str | None = None
    depositDt: str | None = None
    depositTm: str | None = None


class CancelRequest(WireModel):
    """onePassAllCancel.do (REFERENCE.md §3)."""

    iMid: str
    tXid: str
    payMethod: str
    cancelType: str = "1"
    amt: str
    merchantToken: str
    referenceNo: str | None = None
    cancelMsg: str | None = None
    cancelUserId: str | None = None


class CancelResponse(_Result):
    tXid: str | None = None
    referenceNo: str | None = None
    amt: str | None = None
    amount: str | None = None
    transDt: str | None = None
    transTm: str | None = None
