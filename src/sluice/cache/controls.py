"""What a request asks of the cache: ``Cache-Control`` and ``x-sluice-cache-threshold``.

A malformed header is ignored (the request is served as if it were absent) and named in the
response's ``x-sluice-cache-warning``: a cache header never fails a request.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

#: RFC 9111 §5.2: ``token [ "=" ( token / quoted-string ) ]``, comma-separated.
_DIRECTIVE = re.compile(r'^[!#$%&\'*+\-.^_`|~0-9A-Za-z]+(=([!#$%&\'*+\-.^_`|~0-9A-Za-z]+|"[^"\\]*"))?$')
_MAX_HEADER = 1024


@dataclass(frozen=True, slots=True)
class Controls:
    read: bool = True
    write: bool = True
    #: The request's own similarity threshold (semantic cache), already validated.
    threshold: float | None = None
    warning: str | None = None


DEFAULT = Controls()


def parse_controls(cache_control: str | None, threshold: str | None) -> Controls:
    if cache_control is None and threshold is None:
        return DEFAULT
    read = write = True
    warnings: list[str] = []
    if cache_control is not None:
        directives = _directives(cache_control)
        if directives is None:
            warnings.append("malformed cache-control ignored")
        else:
            if "no-store" in directives:
                read = write = False
            elif "no-cache" in directives:
                read = False
    value: float | None = None
    if threshold is not None:
        value = _threshold(threshold)
        if value is None:
            warnings.append("malformed x-sluice-cache-threshold ignored (a number in (0, 1])")
    return Controls(read, write, value, "; ".join(warnings) or None)


def _directives(header: str) -> set[str] | None:
    if len(header) > _MAX_HEADER:
        return None
    out: set[str] = set()
    for part in header.split(","):
        item = part.strip()
        if not item:
            continue  # empty list elements are allowed (RFC 9110 §5.6.1)
        if _DIRECTIVE.match(item) is None:
            return None
        out.add(item.partition("=")[0].lower())
    return out


def _threshold(text: str) -> float | None:
    try:
        value = float(text.strip())
    except ValueError:
        return None
    if not math.isfinite(value) or not 0.0 < value <= 1.0:
        return None
    return value
