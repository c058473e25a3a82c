"""One error shape for every service: {"error": {"code", "message", "details"}}; never a stack trace."""

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("minsheng.errors")

_STATUS_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    410: "gone",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_error",
    429: "rate_limited",
    500: "internal_error",
    502: "upstream_unavailable",
    503: "unavailable",
    504: "upstream_timeout",
}


class AppError(Exception):
    """An error a client should see, with its HTTP status and a stable code."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: list[Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers


def not_found(what: str, ident: str | None = None) -> AppError:
    """404 for a missing thing."""
    return AppError(404, "not_found", f"{what} not found" + (f": {ident}" if ident else ""))


def conflict(code: str, message: str, details: list[Any] | None = None) -> AppError:
    """409 for an action the current state does not allow."""
    return AppError(409, code, message, details)


def forbidden(message: str = "this role may not do that") -> AppError:
    """403 for a principal without the right."""
    return AppError(403, "forbidden", message)


def invalid(code: str, message: str, details: list[Any] | None = None) -> AppError:
    """422 for input that parses but breaks a rule."""
    return AppError(422, code, message, details)


def error_body(code: str, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    """The JSON body of an error."""
    return {"error": {"code": code, "message": message, "details": details or []}}


def error_response(status: int, code: str, message: str, details=None, headers=None) -> JSONResponse:
    """An error as a response."""
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


def _clean_validation_errors(errors) -> list[dict[str, Any]]:
    out = []
    for e in errors:
        item = {"loc": [str(p) for p in e.get("loc", ())], "msg": e.get("msg", ""), "type": e.get("type", "")}
        out.append(item)
    return out


def _is_json(content_type: str) -> bool:
    ct = content_type.split(";")[0].strip().lower()
    return ct == "application/json" or ct.endswith("+json")


async def _on_validation(request: Request, exc: RequestValidationError):
    errors = exc.errors()
    body_errors = [e for e in errors if e.get("loc", ("",))[0] == "body"]
    content_type = request.headers.get("content-type", "")
    if any(e.get("type") == "json_invalid" for e in errors):
        return error_response(400, "malformed_json", "the request body is not valid JSON")
    if body_errors and request.method in ("POST", "PUT", "PATCH") and not _is_json(content_type):
        media = content_type.split(";")[0].strip().lower()
        if media not in ("multipart/form-data", "application/x-www-form-urlencoded"):
            shown = repr(media) if media else "a missing content type"
            return error_response(
                415, "unsupported_media_type", f"{shown} is not accepted; send application/json"
            )
    return error_response(
        422, "validation_error", "the request does not fit the contract", _clean_validation_errors(errors)
    )


async def _on_app_error(request: Request, exc: AppError):
    return error_response(exc.status, exc.code, exc.message, exc.details, exc.headers)


async def _on_http_error(request: Request, exc: StarletteHTTPException):
    code = _STATUS_CODES.get(exc.status_code, "error")
    message = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
    return error_response(exc.status_code, code, message, headers=getattr(exc, "headers", None))


async def _on_unexpected(request: Request, exc: Exception):
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(500, "internal_error", "an internal error occurred; it has been logged")


def install_error_handlers(app: FastAPI) -> None:
    """Make every error, including unexpected ones, a JSON error body."""
    app.add_exception_handler(AppError, _on_app_error)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
