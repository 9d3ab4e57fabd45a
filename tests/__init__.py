"""Downbeat's test suite (a package: shared helpers live in tests/support, no test module imports another)."""
