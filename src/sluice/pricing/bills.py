"""A provider's own account of what it billed, read from its usage export, as :class:`BillLine` s.

Formats (detected from the content):

- OpenAI's usage API (``/v1/organization/usage/completions`` or ``/embeddings``, grouped by model,
  ``bucket_width=1d``): pages of buckets whose results carry tokens and ``num_model_requests``;
- OpenAI's costs API (``/v1/organization/costs``, grouped by line item): results carry an amount
  per ``line_item`` (``"gpt-4o-mini-2024-07-18, input"``);
- Anthropic's usage report (``/v1/organizations/usage_report/messages``, grouped by model);
- a CSV with a header: ``request_id`` (required), and any of ``day`` or ``ts``, ``model``,
  ``input_tokens`` (or ``prompt_tokens``), ``output_tokens`` (or ``completion_tokens``),
  ``cached_tokens``, ``cost_usd`` (or ``cost``).

A JSON file may hold one page or a list of pages. Pure: no I/O beyond the text handed in.
"""

from __future__ import annotations

import csv
import datetime
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any


class BillFormatError(ValueError):
    """The export is not in a format this module reads (the message says what was expected)."""


@dataclass(frozen=True, slots=True)
class BillLine:
    day: str | None
    model: str | None
    #: The provider's id for one request (CSV exports); None for aggregated exports.
    request_id: str | None = None
    requests: int = 0
    #: OpenAI-style: includes cache reads and writes.
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    cost_usd: Decimal | None = None


def read_bill(text: str) -> list[BillLine]:
    stripped = text.lstrip()
    if not stripped:
        raise BillFormatError("the export is empty")
    if stripped[0] not in "[{":
        return _csv_lines(text)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise BillFormatError(f"not valid JSON: {exc}") from None
    pages = data if isinstance(data, list) else [data]
    return [line for page in pages for line in _page_lines(page)]


def _page_lines(page: Any) -> Iterator[BillLine]:
    if not isinstance(page, dict) or not isinstance(page.get("data"), list):
        raise BillFormatError('expected a page of buckets: {"data": [{..., "results": [...]}]}')
    for bucket in page["data"]:
        if not isinstance(bucket, dict):
            raise BillFormatError("a bucket is not an object")
        day = _bucket_day(bucket)
        for result in bucket.get("results") or []:
            if isinstance(result, dict):
                yield _result_line(day, result)


def _bucket_day(bucket: Mapping[str, Any]) -> str | None:
    start = bucket.get("start_time", bucket.get("starting_at"))
    if isinstance(start, int | float) and not isinstance(start, bool):
        return datetime.datetime.fromtimestamp(start, datetime.UTC).date().isoformat()
    if isinstance(start, str):
        return start[:10]
    return None


def _int(result: Mapping[str, Any], key: str) -> int:
    value = result.get(key)
    return int(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0


def _result_line(day: str | None, r: Mapping[str, Any]) -> BillLine:
    kind = r.get("object")
    if kind == "organization.costs.result":
        amount = r.get("amount") or {}
        item = str(r.get("line_item") or "")
        return BillLine(day, item.split(",", 1)[0].strip() or None, cost_usd=_decimal(amount.get("value")))
    if "uncached_input_tokens" in r:  # Anthropic's usage report
        creation = r.get("cache_creation") or {}
        written = sum(_int(creation, k) for k in ("ephemeral_5m_input_tokens", "ephemeral_1h_input_tokens"))
        written += _int(r, "cache_creation_5m_input_tokens") + _int(r, "cache_creation_1h_input_tokens")
        read = _int(r, "cache_read_input_tokens")
        return BillLine(
            day, r.get("model"), input_tokens=_int(r, "uncached_input_tokens") + read + written,
            output_tokens=_int(r, "output_tokens"), cached_tokens=read,
        )  # fmt: skip
    if kind in (None, "organization.usage.completions.result", "organization.usage.embeddings.result"):
        return BillLine(
            day, r.get("model"), requests=_int(r, "num_model_requests"), input_tokens=_int(r, "input_tokens"),
            output_tokens=_int(r, "output_tokens"), cached_tokens=_int(r, "input_cached_tokens"),
        )  # fmt: skip
    raise BillFormatError(f"unknown result object {kind!r}")


def _decimal(value: object) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        raise BillFormatError(f"not a number: {value!r}") from None


_CSV_ALIASES = {
    "prompt_tokens": "input_tokens", "completion_tokens": "output_tokens", "cost": "cost_usd",
    "date": "day",
}  # fmt: skip


def _csv_lines(text: str) -> list[BillLine]:
    reader = csv.DictReader(io.StringIO(text))
    fields = [_CSV_ALIASES.get(f.strip().lower(), f.strip().lower()) for f in reader.fieldnames or []]
    if "request_id" not in fields:
        raise BillFormatError("a CSV export needs a header with a request_id column")
    reader.fieldnames = fields
    out = []
    for n, row in enumerate(reader, start=2):
        try:
            out.append(_csv_line(row))
        except (ValueError, InvalidOperation) as exc:
            raise BillFormatError(f"line {n}: {exc}") from None
    return out


def _csv_line(row: Mapping[str, str | None]) -> BillLine:
    def num(key: str) -> int:
        value = (row.get(key) or "").strip()
        return int(Decimal(value)) if value else 0

    day = (row.get("day") or "").strip()[:10] or None
    ts = (row.get("ts") or "").strip()
    if day is None and ts:
        day = datetime.datetime.fromtimestamp(float(ts), datetime.UTC).date().isoformat()
    return BillLine(
        day, (row.get("model") or "").strip() or None, request_id=(row.get("request_id") or "").strip() or None,
        requests=1, input_tokens=num("input_tokens"), output_tokens=num("output_tokens"),
        cached_tokens=num("cached_tokens"), cost_usd=_decimal((row.get("cost_usd") or "").strip()),
    )  # fmt: skip
