from __future__ import annotations

from sluice.guardrails.output_schema import SchemaChecker, requested_schema
from sluice.schema.chat import ChatRequest, Message, ResponseFormat

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


def test_valid_answers_pass() -> None:
    assert SchemaChecker().problem(SCHEMA, '{"name": "Ada", "age": 36}') is None


def test_problems_name_the_path_and_keyword_never_the_value() -> None:
    checker = SchemaChecker()
    problem = checker.problem(SCHEMA, '{"name": "Ada", "age": "secret-123-45-6789"}')
    assert problem is not None and "'type' failed at $.age" in problem and "6789" not in problem
    assert checker.problem(SCHEMA, "not json") == "the answer is not valid JSON"
    missing = checker.problem(SCHEMA, '{"name": "Ada"}')
    assert missing is not None and "required" in missing


def test_the_schema_comes_from_response_format_json_schema() -> None:
    fmt = ResponseFormat(type="json_schema", json_schema={"name": "p", "schema": SCHEMA})
    chat = ChatRequest(model="m", messages=[Message(role="user", content="x")], response_format=fmt)
    assert requested_schema(chat) == SCHEMA
    plain = ChatRequest(model="m", messages=[Message(role="user", content="x")])
    assert requested_schema(plain) is None
