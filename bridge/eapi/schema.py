"""Validation of request bodies against the packaged EAPI v5 document.

The document is OpenAPI 3.0 as emitted by NSwag. Its schemas are converted to
plain JSON Schema once: `$ref`s inlined, `nullable` turned into a null
alternative, and `allOf` merged (see `_merge_all_of` for why).
"""

from __future__ import annotations

import copy
import functools
import json
import re
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft7Validator

from bridge.eapi.errors import SchemaError

_DOCUMENT = "swagger_v5.json"
_METHODS = ("get", "put", "post", "delete", "patch")
_NO_BODY = object()


@functools.lru_cache(maxsize=1)
def load_document() -> dict[str, Any]:
    """The packaged swagger_v5.json (parsed once)."""
    text = resources.files("bridge.eapi").joinpath(_DOCUMENT).read_text(encoding="utf-8")
    return json.loads(text)


def _lookup_ref(doc: dict[str, Any], ref: str) -> dict[str, Any]:
    if not ref.startswith("#/"):
        raise SchemaError(f"unsupported $ref {ref!r} in the EAPI document")
    node: Any = doc
    for part in ref[2:].split("/"):
        node = node[part]
    return node


def _merge_all_of(members: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge `allOf` members into one object schema.

    NSwag writes inheritance as `allOf: [Base, {additionalProperties: false,
    properties: {extra}}]`. Under strict JSON Schema every member applies on its
    own, so the second member (with no or only the extra properties) forbids all
    of Base's properties, and the first forbids the extra ones: no body could
    ever validate. The intent is "Base plus these fields", so the properties
    are united and `additionalProperties: false` applies to the union.
    """
    merged: dict[str, Any] = {"type": "object", "properties": {}}
    required: list[str] = []
    closed = False
    for member in members:
        if member.get("type", "object") != "object" and "properties" not in member:
            raise SchemaError("allOf with a non-object member is not supported")
        merged["properties"].update(member.get("properties", {}))
        for name in member.get("required", []):
            if name not in required:
                required.append(name)
        if member.get("additionalProperties") is False:
            closed = True
        if member.get("nullable"):
            merged["nullable"] = True
    if required:
        merged["required"] = required
    if closed:
        merged["additionalProperties"] = False
    return merged


def _to_json_schema(doc: dict[str, Any], node: Any, depth: int = 0) -> Any:
    """Inline $refs, merge allOf and express OpenAPI `nullable` in JSON Schema."""
    if depth > 40:
        raise SchemaError("the EAPI document's schemas nest too deeply (recursive $ref?)")
    if isinstance(node, list):
        return [_to_json_schema(doc, item, depth + 1) for item in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = _to_json_schema(doc, _lookup_ref(doc, node["$ref"]), depth + 1)
        extra = {k: v for k, v in node.items() if k != "$ref"}
        if extra:
            target = {**target, **_to_json_schema(doc, extra, depth + 1)}
        return target
    node = {k: _to_json_schema(doc, v, depth + 1) for k, v in node.items()}
    if "allOf" in node:
        rest = {k: v for k, v in node.items() if k != "allOf"}
        node = _merge_all_of(node["allOf"])
        for key, value in rest.items():
            node.setdefault(key, value)
    if node.pop("nullable", False):
        node = _allow_null(node)
    # OpenAPI-only keywords that JSON Schema would ignore anyway; dropped for clarity.
    for key in ("x-enumNames", "x-nullable", "format", "description"):
        node.pop(key, None)
    return node


def _allow_null(node: dict[str, Any]) -> dict[str, Any]:
    if "type" in node and isinstance(node["type"], str) and set(node) <= {"type", "format", "description"}:
        return {**node, "type": [node["type"], "null"]}
    if "oneOf" in node and len(node["oneOf"]) == 1 and set(node) == {"oneOf"}:
        return {"anyOf": [node["oneOf"][0], {"type": "null"}]}
    return {"anyOf": [node, {"type": "null"}]}


@functools.lru_cache(maxsize=1)
def _templates() -> tuple[tuple[str, tuple[str, ...]], ...]:
    return tuple((path, tuple(path.strip("/").split("/"))) for path in load_document()["paths"])


def match_path(path: str) -> str | None:
    """The document's path template for a concrete path (query string ignored), or None.

    Literal segments win over parameters, so `/chargepoints/owned` is not taken
    for `/chargepoints/{chargePointId}`.
    """
    concrete = urlsplit(path).path.rstrip("/")
    segments = tuple(concrete.strip("/").split("/"))
    best: tuple[int, str] | None = None
    for template, parts in _templates():
        if len(parts) != len(segments):
            continue
        literal_hits = 0
        for want, have in zip(parts, segments):
            if want.startswith("{") and want.endswith("}"):
                if not have:
                    break
            elif want != have:
                break
            else:
                literal_hits += 1
        else:
            if best is None or literal_hits > best[0]:
                best = (literal_hits, template)
    return best[1] if best else None


def operation(method: str, template: str) -> dict[str, Any] | None:
    item = load_document()["paths"].get(template)
    if item is None:
        return None
    return item.get(method.lower())


@functools.lru_cache(maxsize=None)
def _request_schema_json(method: str, template: str) -> str | None:
    op = operation(method, template)
    if op is None:
        raise SchemaError(f"the EAPI document has no operation {method.upper()} {template}")
    body = op.get("requestBody")
    if body is None:
        return None
    schema = body.get("content", {}).get("application/json", {}).get("schema")
    if schema is None:
        return None
    return json.dumps(
        {"schema": _to_json_schema(load_document(), schema), "required": bool(body.get("required"))}
    )


def request_schema(method: str, template: str) -> dict[str, Any] | None:
    """The JSON Schema of the request body of an operation, or None when it takes none."""
    raw = _request_schema_json(method.lower(), template)
    return None if raw is None else json.loads(raw)["schema"]


def component_schema(name: str) -> dict[str, Any]:
    """A component schema of the document, converted (refs inlined, allOf merged)."""
    doc = load_document()
    return _to_json_schema(doc, copy.deepcopy(doc["components"]["schemas"][name]))


def validate_request(method: str, path: str, body: Any = _NO_BODY) -> None:
    """Raise SchemaError unless `body` is a valid request body for `method path`.

    `path` is concrete (`/api/v5/chargepoints/123/settings`) or a template.
    `body` is the parsed JSON (None or omitted = no body). Operations without a
    request body in the document accept no body or the empty object `{}` (the
    cloud has answered an empty PUT with 403, so clients send `{}`).
    """
    template = match_path(path)
    if template is None:
        raise SchemaError(f"the EAPI document has no path matching {urlsplit(path).path}")
    m = method.lower()
    if m not in _METHODS or operation(m, template) is None:
        raise SchemaError(f"the EAPI document has no operation {method.upper()} {template}")
    raw = _request_schema_json(m, template)
    has_body = body is not _NO_BODY and body is not None
    if raw is None:
        if has_body and body != {}:
            raise SchemaError(f"{method.upper()} {template} takes no request body")
        return
    spec = json.loads(raw)
    if not has_body:
        if spec["required"]:
            raise SchemaError(f"{method.upper()} {template} requires a JSON body")
        return
    errors = sorted(Draft7Validator(spec["schema"]).iter_errors(body), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(body)"
        raise SchemaError(
            f"{method.upper()} {template}: body invalid at {where}: {_short(first.message)}"
            + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")
        )


def _short(text: str, limit: int = 200) -> str:
    text = re.sub(r"\s+", " ", text)
    return text if len(text) <= limit else text[: limit - 3] + "..."


__all__ = [
    "component_schema",
    "load_document",
    "match_path",
    "operation",
    "request_schema",
    "validate_request",
]
