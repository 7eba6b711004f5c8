"""Outbound payment events to the storefront: the outbox, the delivery loop,
the operator use cases (service) and their shapes (schemas)."""
