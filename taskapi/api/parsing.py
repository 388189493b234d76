"""Reading requests: strict JSON bodies, query strings and path ids, with the contract's 400s.

Input limits of a JSON body, besides its size: a number is at most 100 characters long (sign,
digits, fraction and exponent together) and must be finite, so ``1e999`` is refused; arrays and
objects nest at most 32 levels deep (the body's own object is level 1). A number past its limit
is a 400 ``validation_error`` naming its field, wherever it is (even in a field that would be
ignored); a body nested deeper is a 400 ``invalid_json``.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qsl

from flask import request
from pydantic import BaseModel, ValidationError

from taskapi.errors import ApiError, invalid_json, not_found, validation_error

MAX_NUMBER_CHARS = 100
MAX_NESTING_DEPTH = 32


CANONICAL_UUID = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}", re.ASCII
)


def _field_name(loc: tuple[int | str, ...]) -> str:
    """``('tags', 3)`` → ``tags.3``; the whole body is ``body``."""
    return ".".join(str(part) for part in loc) or "body"


def _message(error: Any) -> str:
    """A readable message for one pydantic error."""
    if error["type"] == "extra_forbidden":
        return "is not a known field"
    if error["type"] == "missing":
        return "is required"
    return str(error["msg"]).removeprefix("Value error, ")


def details_of(error: ValidationError) -> list[dict[str, str]]:
    """Our ``details`` list for a pydantic validation error."""
    return [{"field": _field_name(e["loc"]), "message": _message(e)} for e in error.errors()]


def _reject_constant(name: str) -> None:
    """NaN and Infinity are JavaScript, not JSON."""
    raise ValueError(f"{name} is not valid JSON")


class _RefusedNumber:
    """Stands in for a number past the limits until the field holding it is known."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _parse_int(text: str) -> int | _RefusedNumber:
    """An integer of at most ``MAX_NUMBER_CHARS`` characters, never kept as text."""
    if len(text) > MAX_NUMBER_CHARS:
        return _RefusedNumber(f"is a number longer than {MAX_NUMBER_CHARS} characters")
    return int(text)


def _parse_float(text: str) -> float | _RefusedNumber:
    """A finite float of at most ``MAX_NUMBER_CHARS`` characters (``1e999`` is not)."""
    if len(text) > MAX_NUMBER_CHARS:
        return _RefusedNumber(f"is a number longer than {MAX_NUMBER_CHARS} characters")
    value = float(text)
    return value if math.isfinite(value) else _RefusedNumber("is a number out of range")


def _children(value: Any) -> Iterable[tuple[Any, Any]]:
    """The (key or index, item) pairs of an object or array; nothing for a scalar."""
    if isinstance(value, dict):
        return value.items()
    if isinstance(value, list):
        return enumerate(value)
    return ()


def _too_deep(value: Any) -> bool:
    """Whether arrays and objects nest deeper than ``MAX_NESTING_DEPTH`` (without recursion)."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_NESTING_DEPTH:
                return True
            pending.extend((child, depth + 1) for _, child in _children(item))
    return False


def _refused_value_at(value: Any, path: str = "") -> tuple[str, str] | None:
    """The field and message of the first refused number or non-Unicode string, if any.

    JSON's \\u escapes can encode half of a surrogate pair, which is not Unicode text and
    which PostgreSQL refuses to store. Called only on bodies within the nesting limit.
    """
    if isinstance(value, _RefusedNumber):
        return path or "body", value.reason
    if isinstance(value, str):
        valid = value.isascii() or _encodes(value)
        return None if valid else (path or "body", "must be valid Unicode text")
    for key, item in _children(value):
        if isinstance(key, str) and not _encodes(key):
            return path or "body", "must be valid Unicode text"
        found = _refused_value_at(item, f"{path}.{key}" if path else str(key))
        if found is not None:
            return found
    return None


def _encodes(text: str) -> bool:
    """Whether ``text`` is valid Unicode (encodable as UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _load_json_object(raw: bytes) -> dict[str, Any]:
    """Parse a UTF-8 JSON object strictly: no NaN, no invalid bytes, no lone surrogates."""
    try:
        data = json.loads(
            raw.decode("utf-8"),
            parse_constant=_reject_constant,
            parse_int=_parse_int,
            parse_float=_parse_float,
        )
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError included
        raise invalid_json() from None
    if not isinstance(data, dict):
        raise invalid_json("The request body must be a JSON object.")
    if _too_deep(data):
        raise invalid_json(
            f"The request body nests arrays and objects more than {MAX_NESTING_DEPTH} levels deep."
        )
    refused = _refused_value_at(data)
    if refused is not None:
        raise validation_error([{"field": refused[0], "message": refused[1]}])
    return data


def has_body() -> bool:
    """Whether the request carries a body (an empty one counts as none)."""
    return bool(request.content_length) or bool(request.get_data(cache=True))


def check_media_type(media_types: tuple[str, ...]) -> None:
    """415 for a body in any other media type (checked before every 400)."""
    if request.mimetype not in media_types:
        raise ApiError(
            415, "unsupported_media_type", f"Send the body as {' or '.join(media_types)}."
        )


def parse_body(model: type[BaseModel]) -> BaseModel:
    """Validate the JSON body against ``model``: 400 for bad JSON or fields."""
    data = _load_json_object(request.get_data(cache=True))
    try:
        # Request models are strict, so JSON types are kept: "true" is not a boolean.
        return model.model_validate(data)
    except ValidationError as error:
        raise validation_error(details_of(error)) from None


def _check_query_encoding() -> None:
    """Werkzeug replaces invalid UTF-8 in the query with U+FFFD; a bad value is a 400."""
    try:
        parse_qsl(request.query_string.decode("latin-1"), errors="strict")
    except UnicodeDecodeError:
        raise validation_error(
            [{"field": "query", "message": "must be percent-encoded UTF-8"}]
        ) from None


def parse_query(model: type[BaseModel] | None) -> BaseModel | None:
    """Validate query parameters; unknown and repeated ones are 400. Once per request: a
    folded read (``GET /tasks``) parses its route's query before the view does."""
    # Kept in the request's environ, not in g: an app context (and its g) can outlive one
    # request when something pushed it first.
    parsed: tuple[type[BaseModel] | None, BaseModel | None] | None = request.environ.get(
        PARSED_QUERY
    )
    if parsed is not None and parsed[0] is model:
        return parsed[1]
    result = _validated_query(model)
    request.environ[PARSED_QUERY] = (model, result)
    return result


PARSED_QUERY = "taskapi.parsed_query"


def _validated_query(model: type[BaseModel] | None) -> BaseModel | None:
    """``parse_query``'s validation."""
    _check_query_encoding()
    args = request.args.to_dict(flat=False)
    repeated = [name for name, values in args.items() if len(values) > 1]
    if repeated:
        raise validation_error([{"field": n, "message": "must be given once"} for n in repeated])
    if model is None:
        if args:
            raise validation_error(
                [{"field": n, "message": "is not a known query parameter"} for n in args]
            )
        return None
    try:
        return model.model_validate({name: values[0] for name, values in args.items()})
    except ValidationError as error:
        raise validation_error(details_of(error)) from None


def id_or_none(text: str) -> uuid.UUID | None:
    """``parse_id``, with None for what it refuses (a read that will find nothing)."""
    if not CANONICAL_UUID.fullmatch(text):
        return None
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def parse_id(text: str) -> uuid.UUID:
    """A path id; one that is not a UUID in its canonical form is simply not found
    (Python's parser would also take braces, ``urn:uuid:`` and other scripts' digits)."""
    found = id_or_none(text)
    if found is None:
        raise not_found()
    return found
