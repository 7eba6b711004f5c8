"""Probes, metrics and logs."""
