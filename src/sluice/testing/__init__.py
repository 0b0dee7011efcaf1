"""Fake upstreams: real loopback HTTP servers speaking each provider's wire format.

Used by the test suite, the benchmark, and the built-in demo upstream (``base_url: builtin:demo``).
"""
