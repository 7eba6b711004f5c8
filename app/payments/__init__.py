"""The storefront API and the payment state machine every path shares."""
