"""The reconciler, expiry and cancel."""
