"""Loading one YAML file into validated settings, with errors that name the key and the reason.

``${NAME}`` and ``${NAME:-default}`` in string values are replaced from the environment
before validation, so secrets stay out of config files.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from switchgear.errors import ConfigError

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class Section(BaseModel):
    """Base of every settings section: unknown keys are errors (typos must not pass silently)."""

    model_config = ConfigDict(extra="forbid", frozen=False, populate_by_name=True)


def substitute_env(value: Any, path: str = "") -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string, recursively."""
    if isinstance(value, str):

        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in os.environ:
                return os.environ[name]
            if default is not None:
                return default
            raise ConfigError(path, f"environment variable {name} is not set")

        return _ENV.sub(repl, value)
    if isinstance(value, dict):
        return {k: substitute_env(v, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_env(v, f"{path}[{i}]") for i, v in enumerate(value)]
    return value


def format_validation_error(exc: ValidationError) -> ConfigError:
    """The first validation problem as a ConfigError with a dotted key path."""
    errors = exc.errors()
    first = errors[0]
    parts: list[str] = []
    for loc in first["loc"]:
        if isinstance(loc, int):
            parts.append(f"[{loc}]")
        else:
            parts.append(("." if parts else "") + str(loc))
    path = "".join(parts)
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    return ConfigError(path, msg + more)


def read_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Parse a YAML mapping; a missing file or bad YAML becomes a ConfigError."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read {p}: {exc.strerror or exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError("", f"{p} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("", f"{p} must hold a mapping at the top level")
    return data


def read_secret_file(path: str) -> str:
    """A secret stored in a file: the first non-empty line, stripped."""
    try:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            if line.strip():
                return line.strip()
    except OSError as exc:
        raise ConfigError("", f"cannot read secret file {path}: {exc.strerror or exc}") from None
    raise ConfigError("", f"secret file {path} is empty")


def validation_problems(exc: ValidationError) -> list[ConfigError]:
    """Every validation problem, each as a ConfigError with its dotted key path."""
    out: list[ConfigError] = []
    for err in exc.errors():
        parts: list[str] = []
        for loc in err["loc"]:
            parts.append(f"[{loc}]" if isinstance(loc, int) else ("." if parts else "") + str(loc))
        msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
        out.append(ConfigError("".join(parts), msg))
    return out
