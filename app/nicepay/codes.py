"""NICEPAY V1 codes used by the CVS flow (REFERENCE.md §1.5, §2.3, §4.2, §5)."""

from enum import IntEnum, StrEnum

PAY_METHOD_CVS = "03"
CURRENCY = "IDR"
RESULT_OK = "0000"
NOTIFICATION_USER_AGENT = "Jakarta Commons-HttpClient/3.1"


def is_numeric(value: str) -> bool:
    """NICEPAY's N type: ASCII digits only (str.isdigit alone accepts '²' and full-width)."""
    return value.isascii() and value.isdigit()


class Store(StrEnum):
    ALFAMART = "alfamart"
    INDOMARET = "indomaret"
    LAWSON = "lawson"
    ALFAMIDI = "alfamidi"
    DANDAN = "dandan"

    @property
    def mitra_cd(self) -> str:
        return MITRA_CODES[self]


MITRA_CODES: dict[Store, str] = {
    Store.ALFAMART: "ALMA",
    Store.INDOMARET: "INDO",
    Store.LAWSON: "LOSN",
    Store.ALFAMIDI: "ALMI",
    Store.DANDAN: "DNDN",
}


class InquiryStatus(IntEnum):
    """`status` in an onePassStatus.do answer for a CVS transaction."""

    PAID = 0
    UNPAID = 3
    EXPIRED = 4  # expired, or cancelled before payment
    READY_TO_COMMIT = 5  # the store has locked the code; not paid yet


class NotificationStatus(IntEnum):
    """`status` in a dbProcessUrl push."""

    DEPOSIT = 0
    REVERSAL = 1


class MatchCl(StrEnum):
    MATCH = "1"
    OVER = "2"
    UNDER = "3"


class ResultCode(StrEnum):
    """Result codes the service and the simulator name explicitly."""

    SUCCESS = "0000"
    FAILED_TO_REGISTER = "9001"
    INVALID_AMOUNT = "9008"
    DUPLICATE_REFERENCE = "9009"
    INVALID_TOKEN = "9010"
    INVALID_MID = "9011"
    UNDEFINED_REFERENCE = "9014"
    UNDEFINED_GOODS = "9015"
    UNDEFINED_BILLING_NAME = "9016"
    UNDEFINED_BILLING_PHONE = "9017"
    UNDEFINED_BILLING_EMAIL = "9018"
    UNDEFINED_DB_PROCESS_URL = "9020"
    INVALID_CART = "9022"
    CART_TOTAL_MISMATCH = "9023"
    UNDEFINED_USER_IP = "9024"
    CANNOT_CANCEL = "9314"
    DEPOSIT_COMPLETED = "9330"
    INVALID_EXPIRY = "9510"
    MITRA_NOT_CONTRACTED = "9522"
    TRANSACTION_NOT_FOUND = "9528"
