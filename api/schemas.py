"""JSON Schema pieces for the OpenAPI document (OpenAPI 3.0, which the bundled Swagger UI reads)."""

from __future__ import annotations

from typing import Any


def obj(description: str = "", /, **properties: dict[str, Any]) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties, "required": list(properties)}
    if description:
        schema["description"] = description
    return schema


def array(items: dict[str, Any], description: str = "") -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "array", "items": items}
    if description:
        schema["description"] = description
    return schema


def number(description: str = "", nullable: bool = False) -> dict[str, Any]:
    return _scalar("number", description, nullable)


def integer(description: str = "", nullable: bool = False) -> dict[str, Any]:
    return _scalar("integer", description, nullable)


def string(description: str = "", nullable: bool = False) -> dict[str, Any]:
    return _scalar("string", description, nullable)


def boolean(description: str = "") -> dict[str, Any]:
    return _scalar("boolean", description, False)


def time(description: str = "", nullable: bool = False) -> dict[str, Any]:
    schema = _scalar("string", description or "UTC, ISO-8601 with milliseconds", nullable)
    schema["format"] = "date-time"
    return schema


def day(description: str = "") -> dict[str, Any]:
    return {"type": "string", "format": "date", "description": description or "UTC day"}


def _scalar(kind: str, description: str, nullable: bool) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": kind}
    if description:
        schema["description"] = description
    if nullable:
        schema["nullable"] = True
    return schema


ERROR = obj("Every refusal: the status again and a sentence naming what was wrong",
            error=string("what was wrong, naming the parameter when one was"), status=integer())
