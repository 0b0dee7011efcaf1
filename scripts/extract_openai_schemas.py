"""Extract the OpenAI response schemas Sluice must satisfy (with every schema they reference)
from the OpenAPI description, into a small JSON file the tests validate against.

    python scripts/extract_openai_schemas.py ../shared/reference/openai-openapi.yaml
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOTS = [
    "CreateChatCompletionResponse",
    "CreateChatCompletionStreamResponse",
    "CreateEmbeddingResponse",
    "ListModelsResponse",
    "Model",
    "ErrorResponse",
    # The Responses API: the object, and each stream event Sluice sends.
    "Response",
    "ResponseCreatedEvent",
    "ResponseInProgressEvent",
    "ResponseOutputItemAddedEvent",
    "ResponseContentPartAddedEvent",
    "ResponseTextDeltaEvent",
    "ResponseTextDoneEvent",
    "ResponseContentPartDoneEvent",
    "ResponseFunctionCallArgumentsDeltaEvent",
    "ResponseFunctionCallArgumentsDoneEvent",
    "ResponseOutputItemDoneEvent",
    "ResponseCompletedEvent",
    "ResponseIncompleteEvent",
    "ResponseFailedEvent",
    "ResponseErrorEvent",
]


def refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[1])
        for value in node.values():
            found |= refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= refs(value)
    return found


def main(src: str) -> None:
    spec = yaml.load(Path(src).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    schemas = spec["components"]["schemas"]
    keep: dict[str, Any] = {}
    todo = list(ROOTS)
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep[name] = schemas[name]
        todo.extend(refs(schemas[name]) - keep.keys())
    # The spec types the stream's finish_reason as nullable but leaves null out of its enum;
    # OpenAI's own streams send null on every chunk but the last. Allow what the API sends.
    stream_choice = keep["CreateChatCompletionStreamResponse"]["properties"]["choices"]["items"]
    stream_choice["properties"]["finish_reason"]["enum"].append(None)
    stream_choice["properties"]["finish_reason"]["type"] = ["string", "null"]
    out = {
        "source": f"openai/openai-openapi openapi.yaml, info.version {spec['info']['version']}",
        "components": {"schemas": keep},
    }
    target = Path(__file__).resolve().parent.parent / "tests/e2e/fixtures/openai_schemas.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(out, indent=1, sort_keys=True) + "\n")
    print(f"wrote {len(keep)} schemas to {target}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/reference/openai-openapi.yaml")
