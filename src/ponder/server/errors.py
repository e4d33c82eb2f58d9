"""Errors as OpenAI's error object, with the right HTTP status."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from starlette.responses import JSONResponse


def clip(text: str, most: int = 64) -> str:
    """A client's string as an error message quotes it: non-printable characters as ``?``, cut
    to ``most`` characters."""
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= most else text[:most] + "…"


class ApiError(Exception):
    """An error the client gets as OpenAI's error object."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: str | None = None, code: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = (
            status, message, type_, param, code)
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def validation_error(exc: ValidationError) -> ApiError:
    err = exc.errors()[0]
    param = ".".join(str(p) for p in err["loc"]) or None
    if err["type"] == "extra_forbidden":
        return ApiError(400, f"Unrecognized request argument supplied: {param}", param=param,
                        code="unknown_parameter")
    message = err["msg"].removeprefix("Value error, ")
    return ApiError(400, f"Invalid value for '{param}': {message}", param=param,
                    code="invalid_value")
