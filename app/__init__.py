"""Merchant-side NICEPAY V1 convenience-store payments service."""
