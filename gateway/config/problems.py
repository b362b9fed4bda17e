"""How a refused configuration is explained (in a ConfigError): every problem on one line,
named by its dotted path (`readers[1].port`), with the value found unless it is a secret,
and the environment variable that set it when one did (docs/design.md, "Principles":
clear errors).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any, get_args

from pydantic import ValidationError
from pydantic_core import ErrorDetails
from pydantic_settings import SettingsError

from gateway.config.outputs import FeedbackConfig
from gateway.config.readers import ReaderConfig
from gateway.config.settings import ENV_NESTED_DELIMITER, ENV_PREFIX

Loc = tuple[str | int, ...]

_SECRET_WORDS = ("key", "secret", "password", "token")


_TOML_TYPES = {
    "model_type": "input should be a table",
    "model_attributes_type": "input should be a table",
    "dict_type": "input should be a table",
    "list_type": "input should be an array",
}


def _union_tags(union_type: Any, key: str) -> frozenset[str]:
    union = get_args(union_type)[0]
    members = get_args(union) or (union,)
    return frozenset(t for m in members for t in get_args(m.model_fields[key].annotation))


# pydantic puts the chosen tag (a reader's `driver`, an output's `output`) into the path of
# errors inside an entry of these lists; we drop it.
_LIST_TAGS = {
    "readers": _union_tags(ReaderConfig, "driver"),
    "feedback": _union_tags(FeedbackConfig, "output"),
}


def describe_all(exc: ValidationError) -> list[str]:
    """One line per problem pydantic found, attributed to the environment where it applies."""
    overrides = _env_overrides()
    return [describe(error, overrides) for error in exc.errors(include_url=False)]


def describe(error: ErrorDetails, overrides: Mapping[tuple[str, ...], str]) -> str:
    loc, message, value = _explain(error)
    line = f"{_dotted(loc)}: {message}"
    if not _is_secret(loc):
        line += _got(error["type"], value)
    env_var = _env_source(loc, overrides)
    return f"{line} (from {env_var})" if env_var else line


def _explain(error: ErrorDetails) -> tuple[Loc, str, Any]:
    loc = _without_tags(error["loc"])
    ctx = error.get("ctx", {})
    kind = error["type"]
    if kind == "missing":
        return loc, "required, but missing", None
    if kind == "extra_forbidden":
        return loc, "unknown key", None
    if kind == "union_tag_not_found":
        return (*loc, _tag_key(ctx)), "required, but missing", None
    if kind == "union_tag_invalid":
        key = _tag_key(ctx)
        return (*loc, key), f"unknown {key} (expected {ctx['expected_tags']})", ctx["tag"]
    message = _TOML_TYPES.get(kind) or _reason(error["msg"])
    return loc, message, error["input"]


def _tag_key(ctx: Mapping[str, Any]) -> str:
    return str(ctx["discriminator"]).strip("'")  # given quoted: "'driver'"


def _without_tags(loc: Loc) -> Loc:
    kept: list[str | int] = []
    for part in loc:
        in_entry = len(kept) == 2 and isinstance(kept[1], int)
        if not (in_entry and part in _LIST_TAGS.get(str(kept[0]), ())):
            kept.append(part)
    return tuple(kept)


def _reason(msg: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg[:1].lower() + msg[1:] if msg[1:2].islower() else msg


def _got(kind: str, value: Any) -> str:
    if isinstance(value, dict):
        return " (got a table)" if kind.endswith("_type") else ""
    if isinstance(value, list | tuple):
        return " (got an array)" if kind.endswith("_type") else ""
    if value is None:
        return ""
    shown = repr(value)
    return f" (got {shown[:60]}…)" if len(shown) > 60 else f" (got {shown})"


def _dotted(loc: Loc) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else f".{part}"
    return text.removeprefix(".") or "(top level)"


def _is_secret(loc: Loc) -> bool:
    return any(w in str(part).lower() for part in loc for w in _SECRET_WORDS)


def _env_overrides() -> dict[tuple[str, ...], str]:
    """The configuration paths set by environment variables, each with its variable."""
    prefix = ENV_PREFIX.lower()
    found: dict[tuple[str, ...], str] = {}
    for name in os.environ:
        if name.lower().startswith(prefix):
            path = name[len(prefix) :].lower().split(ENV_NESTED_DELIMITER)
            found[tuple(path)] = name
    return found


def _env_source(loc: Loc, overrides: Mapping[tuple[str, ...], str]) -> str | None:
    """The variable that gave the value at `loc`, if the environment gave it."""
    for size in range(len(loc), 0, -1):
        name = overrides.get(tuple(str(part) for part in loc[:size]))
        if name is not None:
            return name if _json_holds(os.environ[name], loc[size:]) else None
    return None


def _json_holds(raw: str, rest: Loc) -> bool:
    """Whether a JSON variable has a value at `rest`; parts it lacks came from the file."""
    if not rest:
        return True
    try:
        value = json.loads(raw)
    except ValueError:
        return False
    for part in rest:
        try:
            value = value[part]
        except (KeyError, IndexError, TypeError):
            return False
    return True


def describe_env_parse_error(exc: SettingsError) -> str:
    match = re.search(r'field "([^"]+)"', str(exc))
    field = match.group(1) if match else "(top level)"
    names = sorted(name for path, name in _env_overrides().items() if path[0] == field)
    where = f" (from {', '.join(names)})" if names else ""
    return f"{field}: the environment value is not valid JSON: {exc.__cause__ or exc}{where}"
