"""One OpenAPI document for the whole public contract: the gateway's own paths plus each service's."""

import copy
from typing import Any

from kit.security import CLIENT, PUBLIC

SECURITY_SCHEMES = {
    "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "channel clients"},
    "StaffBearer": {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "staff token from POST /api/v1/auth/token",
    },
    "Open311Key": {"type": "apiKey", "in": "query", "name": "api_key", "description": "Open311 clients"},
}


def _security_for(path: str, access: list[str]) -> list[dict[str, list]]:
    if PUBLIC in access:
        return []
    out: list[dict[str, list]] = []
    if CLIENT in access:
        out.append({"ApiKey": []})
        if path.startswith("/open311/"):
            out.append({"Open311Key": []})
    if any(a not in (PUBLIC, CLIENT) for a in access):
        out.append({"StaffBearer": []})
    return out


def _rewrite_refs(node: Any, renames: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {}
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and v.startswith("#/components/schemas/"):
                name = v.rsplit("/", 1)[1]
                out[k] = f"#/components/schemas/{renames.get(name, name)}"
            else:
                out[k] = _rewrite_refs(v, renames)
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, renames) for v in node]
    return node


def merge(
    *, own: dict[str, Any], services: dict[str, dict[str, Any]], title: str, version: str
) -> dict[str, Any]:
    """The gateway's document plus the services' public operations; clashing schema names get a prefix."""
    doc: dict[str, Any] = {
        "openapi": own.get("openapi", "3.1.0"),
        "info": {
            "title": title,
            "version": version,
            "description": "民声 Minsheng public API (v1). Errors are JSON "
            '`{"error": {"code", "message", "details"}}`.',
        },
        "paths": copy.deepcopy(own.get("paths", {})),
        "components": {
            "schemas": copy.deepcopy(own.get("components", {}).get("schemas", {})),
            "securitySchemes": SECURITY_SCHEMES,
        },
        "tags": [],
    }
    for path, item in doc["paths"].items():
        for op in item.values():
            if isinstance(op, dict) and op.get("x-access"):
                op["security"] = _security_for(path, op["x-access"])
    schemas = doc["components"]["schemas"]
    for name, spec in services.items():
        theirs = spec.get("components", {}).get("schemas", {})
        renames = {
            s: f"{name.capitalize()}{s}" for s, body in theirs.items() if s in schemas and schemas[s] != body
        }
        for s, body in theirs.items():
            schemas[renames.get(s, s)] = _rewrite_refs(body, renames)
        for path, item in spec.get("paths", {}).items():
            public_ops = {}
            for method, op in item.items():
                if not isinstance(op, dict) or not op.get("x-access"):
                    continue
                op = _rewrite_refs(copy.deepcopy(op), renames)
                op["security"] = _security_for(path, op["x-access"])
                op.setdefault("tags", [name])
                public_ops[method] = op
            if public_ops:
                doc["paths"].setdefault(path, {}).update(public_ops)
        doc["tags"].append({"name": name, "description": spec.get("info", {}).get("description", "")})
    return doc
