"""AWS Signature Version 4 for Bedrock, as a pure function handed the clock.

Only what Bedrock's runtime API needs: POST with a JSON body, no query string, service name
``bedrock``. The path is signed as AWS expects for non-S3 services: each segment of the already
URL-encoded path is encoded once more (``:`` → ``%3A`` on the wire, ``%253A`` when signed).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
from urllib.parse import quote, urlsplit


@dataclass(frozen=True, slots=True)
class AwsCredentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None = None


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.digest(key, msg.encode("utf-8"), "sha256")


def sign(
    method: str, url: str, headers: dict[str, str], body: bytes, creds: AwsCredentials, region: str,
    now: float, service: str = "bedrock",
) -> dict[str, str]:  # fmt: skip
    """Return ``headers`` plus ``x-amz-date``, ``x-amz-security-token`` (if any) and ``authorization``."""
    parts = urlsplit(url)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    date = stamp[:8]
    signed = {k.lower(): v.strip() for k, v in headers.items()}
    signed["host"] = parts.netloc
    signed["x-amz-date"] = stamp
    if creds.session_token:
        signed["x-amz-security-token"] = creds.session_token
    names = sorted(signed)
    canonical_uri = "/".join(quote(seg, safe="-_.~") for seg in (parts.path or "/").split("/"))
    canonical_query = "&".join(sorted(parts.query.split("&"))) if parts.query else ""
    canonical = "\n".join([
        method.upper(), canonical_uri, canonical_query,
        "".join(f"{n}:{signed[n]}\n" for n in names), ";".join(names), hashlib.sha256(body).hexdigest(),
    ])  # fmt: skip
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = _hmac(
        _hmac(_hmac(_hmac(("AWS4" + creds.secret_access_key).encode(), date), region), service),
        "aws4_request",
    )
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    out = {k: v for k, v in signed.items() if k != "host"}
    out["authorization"] = (
        f"AWS4-HMAC-SHA256 Credential={creds.access_key_id}/{scope}, SignedHeaders={';'.join(names)}, Signature={signature}"
    )
    return out
