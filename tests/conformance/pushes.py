"""Every notification shape NICEPAY's documents show, written here from those facts, each with
the outcome the service must reach.

Sources (cited on each case):
- CVS-NOTIF: NICEPAY's "Notification - API Convenience Store" page
  (/work/shared/nicepay/source-docs/cvs-notification.txt; REFERENCE.md DOCS-CVS-NOTIF-V2). Its
  sample POST and its parameter table; the stored copy is lower-cased, the case is restored
  from the table's names.
- V1-NOTIF: NICEPAY's "V1 Notification" page (source-docs/v1-notification.txt; REFERENCE.md
  DOCS-NOTIF-V1): the common parameters and the "Others Payment Method" ones (CVS).
- PDF-3.3: NICEPAY's V1 PHP PDF v1.13 §3.3, through REFERENCE.md §4.1 and §9: the push is
  tXid, referenceNo, amt, merchantToken, no status, in the query string.
- PY-MOCK: NICEPAY's Python sample `testMockNotification.py` (REFERENCE.md §6): tXid,
  referenceNo, amt, merchantToken, matchCl=1, status=0, bankCd, vacctNo, authNo.
- REF-4.2 / REF-9: REFERENCE.md §4.2 (status 0 deposit, 1 reversal; matchCl 1/2/3) and §9
  (pushes carry transDt/transTm of the deposit and no iMid; a page shows payMethod 04 in its
  table and 03 in its sample; no official handler reads `status`: they ask the inquiry).

A case is a few steps, each an optional change at NICEPAY (the simulator process) and then
one push to the service process, with the outcome the ledger must record and the HTTP reply
NICEPAY must get; then the payment's final status. Field values in braces are filled from
the payment the case registers: {txid}, {reference_no}, {amt}, {pay_no}, {mitra_cd},
{deposit_dt}, {deposit_tm}, {valid_dt}, {valid_tm}; {token} is SHA256(iMid + tXid + amt +
key) over the push's own tXid and amt (REFERENCE.md §4.1); {reference_token} is the
registration formula SHA256(iMid + referenceNo + amt + key) and {timestamp_token} the V2
formula with a timestamp in front, the two mistakes REFERENCE.md §6 found in SDKs.
"""

from dataclasses import dataclass, field
from typing import Literal

# What NICEPAY does before the push (a simulator control route), or nothing.
AtNicepay = Literal["settle", "reverse", "expire", "nothing"]
Carrier = Literal["body", "query"]
Outcome = Literal["applied", "duplicate", "quarantined", "rejected", "awaiting_confirmation"]


@dataclass(frozen=True)
class Step:
    fields: dict[str, str]
    expect: Outcome
    http: int = 200
    at_nicepay: AtNicepay = "nothing"
    carrier: Carrier = "body"
    inquiries: int | None = None  # status inquiries this push must cause, when it matters


@dataclass(frozen=True)
class Case:
    id: str
    source: str
    steps: tuple[Step, ...]
    final_status: str | None  # the payment's status at the end; None: no payment involved
    register: bool = True  # False: the push names a payment this service never registered
    verify_with_inquiry: bool = True  # NICEPAY_VERIFY_WITH_INQUIRY of the service process
    xfail: str | None = None
    notes: str = ""
    extra: dict[str, str] = field(default_factory=dict)


# --- the shapes, as the documents give them ----------------------------------------------

# CVS-NOTIF "sample post for convenience store notification", every field in its order,
# with the page's own values (tXid, token, referenceNo, amount are the page's).
CVS_NOTIF_SAMPLE = {
    "merchantToken": "8b5565e793731a1a1c8817c9e42bcbbdc3f5fb6a2785a6e0b19a2d5e3a41a51b",
    "goodsNm": "Testing",
    "referenceNo": "ORD0123456",
    "mitraCd": "ALMA",
    "transTm": "150229",
    "tXid": "TNICECV03103202212141459041632",
    "amt": "5000",
    "instmntType": "1",
    "billingNm": "John Doe",
    "matchCl": "1",
    "payNo": "504100002539",
    "payValidTm": "null",
    "payMethod": "03",
    "currency": "IDR",
    "instmntMon": "1",
    "payValidDt": "null",
    "transDt": "20221214",
    "status": "0",
}

# The same sample for a payment of ours: NICEPAY's identifiers and token replaced, the rest
# (its literal "null" expiry fields, instalment fields, billingNm...) kept as the page shows.
CVS_NOTIF_OURS = {
    **CVS_NOTIF_SAMPLE,
    "merchantToken": "{token}",
    "referenceNo": "{reference_no}",
    "mitraCd": "{mitra_cd}",
    "transTm": "{deposit_tm}",
    "tXid": "{txid}",
    "amt": "{amt}",
    "payNo": "{pay_no}",
    "transDt": "{deposit_dt}",
}

# V1-NOTIF: the common parameters, then the "Others Payment Method" (CVS) ones, no iMid.
V1_NOTIF = {
    "tXid": "{txid}",
    "merchantToken": "{token}",
    "referenceNo": "{reference_no}",
    "payMethod": "03",
    "amt": "{amt}",
    "transDt": "{deposit_dt}",
    "transTm": "{deposit_tm}",
    "currency": "IDR",
    "goodsNm": "Kopi Susu 1L",
    "billingNm": "Budi Santoso",
    "matchCl": "1",
    "status": "0",
    "mitraCd": "{mitra_cd}",
    "payNo": "{pay_no}",
    "payValidDt": "{valid_dt}",
    "payValidTm": "{valid_tm}",
    "receiptCode": "AUTH0000000000000001",
    "mRefNo": "BANKREF00000000001",
}

# PDF-3.3: the four fields, no status.
PDF_FOUR = {
    "tXid": "{txid}",
    "referenceNo": "{reference_no}",
    "amt": "{amt}",
    "merchantToken": "{token}",
}

# PY-MOCK: NICEPAY's own mock push (a VA-flavoured one, used by its CVS sample too).
PY_MOCK = {
    "tXid": "{txid}",
    "referenceNo": "{reference_no}",
    "amt": "{amt}",
    "merchantToken": "{token}",
    "matchCl": "1",
    "status": "0",
    "bankCd": "BMRI",
    "vacctNo": "8888000000000001",
    "authNo": "000001",
}


def reversal(shape: dict[str, str]) -> dict[str, str]:
    return {**shape, "status": "1"}


def changed(shape: dict[str, str], **values: str) -> dict[str, str]:
    return {**shape, **values}


CASES: tuple[Case, ...] = (
    Case(
        id="cvs-notif-sample-verbatim",
        source="CVS-NOTIF sample post; REFERENCE.md §0 (the page's token is an illustration)",
        register=False,
        steps=(Step(CVS_NOTIF_SAMPLE, "rejected", 403),),
        final_status=None,
        notes="the page's token does not verify with any key: 403, recorded, nothing applied",
    ),
    Case(
        id="cvs-notif-sample-deposit",
        source="CVS-NOTIF sample post, for a payment of ours",
        steps=(Step(CVS_NOTIF_OURS, "applied", at_nicepay="settle"),),
        final_status="paid",
    ),
    Case(
        id="cvs-notif-sample-deposit-in-query-string",
        source="CVS-NOTIF sample post; REFERENCE.md §4.1 (fields may come in the query string)",
        steps=(Step(CVS_NOTIF_OURS, "applied", at_nicepay="settle", carrier="query"),),
        final_status="paid",
    ),
    Case(
        id="cvs-notif-sample-copy-is-duplicate",
        source="CVS-NOTIF sample post twice (REFERENCE.md §4.4: retries are undocumented)",
        steps=(
            Step(CVS_NOTIF_OURS, "applied", at_nicepay="settle"),
            Step(CVS_NOTIF_OURS, "duplicate"),
        ),
        final_status="paid",
    ),
    Case(
        id="cvs-notif-table-paymethod-04",
        source="CVS-NOTIF parameter table (payMethod example 04); REFERENCE.md §9",
        steps=(
            Step(
                changed(CVS_NOTIF_OURS, payMethod="04"),
                "applied",
                at_nicepay="settle",
                inquiries=1,
            ),
        ),
        final_status="paid",
        notes="(b) token and tXid are ours: the inquiry decides, it says paid",
    ),
    Case(
        id="cvs-notif-table-paymethod-04-unpaid",
        source="CVS-NOTIF parameter table (payMethod example 04); REFERENCE.md §9",
        steps=(Step(changed(CVS_NOTIF_OURS, payMethod="04"), "quarantined", inquiries=1),),
        final_status="pending",
        notes="(b) the inquiry decides, and says unpaid (status 3): quarantined, still pending",
    ),
    Case(
        id="v1-notif-table-deposit",
        source="V1-NOTIF common parameters + Others Payment Method parameters",
        steps=(Step(V1_NOTIF, "applied", at_nicepay="settle"),),
        final_status="paid",
    ),
    Case(
        id="v1-notif-table-reversal",
        source="V1-NOTIF status 1: Reversal; REFERENCE.md §4.2",
        steps=(
            Step(V1_NOTIF, "applied", at_nicepay="settle"),
            Step(reversal(V1_NOTIF), "applied", at_nicepay="reverse", inquiries=1),
            Step(reversal(V1_NOTIF), "duplicate", carrier="query"),
        ),
        final_status="reversed",
    ),
    Case(
        id="v1-notif-reversal-nicepay-still-paid",
        source="V1-NOTIF status 1; API.md (the token does not cover status)",
        steps=(
            Step(V1_NOTIF, "applied", at_nicepay="settle"),
            Step(reversal(V1_NOTIF), "quarantined", inquiries=1),
        ),
        final_status="paid",
        notes="a deposit push re-sent as status=1: NICEPAY still says paid",
    ),
    Case(
        id="v1-notif-reversal-inquiry-off-nicepay-still-paid",
        source="API.md notification: reversals always confirmed; issue 12 (c)",
        verify_with_inquiry=False,
        steps=(
            Step(V1_NOTIF, "applied", at_nicepay="settle"),
            Step(reversal(V1_NOTIF), "quarantined", inquiries=1),
        ),
        final_status="paid",
        notes="(c) NICEPAY_VERIFY_WITH_INQUIRY=false: a copied deposit as status=1 reverses nothing",
    ),
    Case(
        id="v1-notif-reversal-inquiry-off-confirmed",
        source="API.md notification: reversals always confirmed; issue 12 (c)",
        verify_with_inquiry=False,
        steps=(
            Step(V1_NOTIF, "applied", at_nicepay="settle", inquiries=0),
            Step(reversal(V1_NOTIF), "applied", at_nicepay="reverse", inquiries=1),
        ),
        final_status="reversed",
        notes="(c) with the inquiry off a deposit is applied on its token, a reversal is not",
    ),
    Case(
        id="v1-notif-reversal-of-unpaid-code",
        source="V1-NOTIF status 1; README state machine (paid -> reversed only)",
        steps=(Step(reversal(V1_NOTIF), "quarantined"),),
        final_status="pending",
    ),
    Case(
        id="v1-notif-deposit-after-expiry",
        source="V1-NOTIF deposit; REFERENCE.md §2.3 (4 = expired) — a late deposit NICEPAY confirms",
        steps=(Step(V1_NOTIF, "quarantined", at_nicepay="expire", inquiries=1),),
        final_status="pending",
        notes="NICEPAY says expired (status 4), not paid: the push is not believed",
    ),
    Case(
        id="pdf-four-fields-query-string",
        source="PDF-3.3 (REFERENCE.md §4.1, §9)",
        steps=(Step(PDF_FOUR, "applied", at_nicepay="settle", carrier="query", inquiries=1),),
        final_status="paid",
        notes="(a) no status: a deposit to confirm with the inquiry, which says paid",
    ),
    Case(
        id="pdf-four-fields-body",
        source="PDF-3.3 fields in a form body (REFERENCE.md §4.1: query or body)",
        steps=(Step(PDF_FOUR, "applied", at_nicepay="settle", inquiries=1),),
        final_status="paid",
        notes="(a) as above, in the body",
    ),
    Case(
        id="pdf-four-fields-inquiry-off",
        source="PDF-3.3; API.md (a push without status is a deposit to be confirmed)",
        verify_with_inquiry=False,
        steps=(Step(PDF_FOUR, "applied", at_nicepay="settle", carrier="query", inquiries=1),),
        final_status="paid",
        notes="(a) confirmed with the inquiry even when NICEPAY_VERIFY_WITH_INQUIRY=false",
    ),
    Case(
        id="pdf-four-fields-unpaid",
        source="PDF-3.3; REFERENCE.md §2.3 (status 3 unpaid)",
        steps=(Step(PDF_FOUR, "quarantined", carrier="query", inquiries=1),),
        final_status="pending",
        notes="(a) no status, NICEPAY says unpaid: recorded and set aside, not a 400",
    ),
    Case(
        id="pdf-four-fields-copy",
        source="PDF-3.3 twice",
        steps=(
            Step(PDF_FOUR, "applied", at_nicepay="settle", carrier="query"),
            Step(PDF_FOUR, "duplicate", carrier="query"),
        ),
        final_status="paid",
        notes="(a) a copy of an applied four-field push is a duplicate",
    ),
    Case(
        id="pdf-four-fields-bad-token",
        source="PDF-3.3 with a token not made with our key",
        steps=(
            Step(
                changed(PDF_FOUR, merchantToken="0" * 64),
                "rejected",
                403,
                at_nicepay="settle",
                carrier="query",
                inquiries=0,
            ),
        ),
        final_status="pending",
        notes="(a) no status is no longer malformed: the token decides (403), not the form (400)",
    ),
    Case(
        id="sdk-token-made-with-the-reference-formula",
        source="REFERENCE.md §6 (egg-/nicepay-id validateNotification: referenceNo formula)",
        steps=(
            Step(
                changed(V1_NOTIF, merchantToken="{reference_token}"),
                "rejected",
                403,
                at_nicepay="settle",
            ),
        ),
        final_status="pending",
    ),
    Case(
        id="sdk-token-with-a-timestamp-in-front",
        source="REFERENCE.md §1.3, §6 (golang-nicepay V1: a V2-style timeStamp prefix)",
        steps=(
            Step(
                changed(V1_NOTIF, merchantToken="{timestamp_token}"),
                "rejected",
                403,
                at_nicepay="settle",
            ),
        ),
        final_status="pending",
    ),
    Case(
        id="py-mock-notification",
        source="PY-MOCK (REFERENCE.md §6)",
        steps=(Step(PY_MOCK, "applied", at_nicepay="settle"),),
        final_status="paid",
        notes="other payment methods' fields (bankCd, vacctNo, authNo) are tolerated",
    ),
    Case(
        id="amount-differs-from-registered",
        source="CVS-NOTIF shape; docs.nicepay.co.id/en/cvs-feature (closed amount, REFERENCE §1.2)",
        steps=(Step(changed(CVS_NOTIF_OURS, amt="1000"), "quarantined", at_nicepay="settle"),),
        final_status="pending",
    ),
    Case(
        id="matchcl-over-and-under",
        source="REF-4.2 matchCl 2 = over, 3 = under (CVS is closed amount)",
        steps=(
            Step(changed(CVS_NOTIF_OURS, matchCl="2"), "quarantined", at_nicepay="settle"),
            Step(changed(CVS_NOTIF_OURS, matchCl="3"), "quarantined"),
        ),
        final_status="pending",
    ),
    Case(
        id="currency-not-idr",
        source="CVS-NOTIF currency IDR",
        steps=(Step(changed(CVS_NOTIF_OURS, currency="USD"), "quarantined", at_nicepay="settle"),),
        final_status="pending",
    ),
    Case(
        id="status-out-of-range",
        source="REF-4.2 status 0 or 1 only",
        steps=(Step(changed(V1_NOTIF, status="7"), "rejected", 400, at_nicepay="settle"),),
        final_status="pending",
    ),
    Case(
        id="amt-with-decimals",
        source="REFERENCE.md §1.2 amt N 12 (9008: numbers only)",
        steps=(Step(changed(V1_NOTIF, amt="10000.00"), "rejected", 400, at_nicepay="settle"),),
        final_status="pending",
    ),
)
