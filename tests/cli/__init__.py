"""The operator command line, run as real processes."""
