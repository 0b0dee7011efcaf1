"""The response cache: key derivation, entry codec, stores (memory, redis) and stream replay.

Each part sits behind a small protocol; :mod:`sluice.pipeline.cache` is the thin middleware that
puts them in the request's way.
"""
