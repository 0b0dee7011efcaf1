"""Fixtures for pipeline tests: the limit backends of tests/limits (memory and Redis)."""

from tests.limits.conftest import clock, make_limiter, prefix

__all__ = ["clock", "make_limiter", "prefix"]
