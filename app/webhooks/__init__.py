"""Outbound payment events to the storefront: the outbox and its dispatcher."""
