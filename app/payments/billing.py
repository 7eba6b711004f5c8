"""The buyer's address NICEPAY requires on every registration.

NICEPAY answers 9025 / 9026 / 9027 / 9028 when billingCity / billingState / billingPostCd /
billingCountry is empty (REFERENCE.md §5.1, §9), yet a storefront that collects only name,
phone and email is normal. So each of the four is the customer's when given, otherwise the
merchant's BILLING_DEFAULT_* setting (API.md, "Settings").
"""

from app.config import Settings
from app.payments.schemas import Customer


def billing_address(customer: Customer, settings: Settings) -> dict[str, str]:
    """billingCity, billingState, billingPostCd and billingCountry, never empty."""
    defaults = settings.billing_defaults
    return {
        "billingCity": customer.city or defaults["city"],
        "billingState": customer.state or defaults["state"],
        "billingPostCd": customer.postal_code or defaults["postal_code"],
        "billingCountry": customer.country or defaults["country"],
    }
