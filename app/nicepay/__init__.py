"""The NICEPAY V1 protocol: tokens, wire models, codes, WIB time, and the async client.

Nothing in this package knows about FastAPI or the database.
"""
