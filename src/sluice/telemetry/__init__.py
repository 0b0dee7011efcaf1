"""Structured logs (and, later, metrics and traces)."""
