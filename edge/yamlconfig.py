"""Loading hand-edited YAML config into pydantic models, shared by cameras.yaml and central.yaml.

Gives both files the same behaviour: ``yaml.safe_load`` only; ``${VAR}`` / ``${VAR:-default}`` from the
environment (a missing variable is an error naming where it is used); unknown keys rejected; every
problem reported as ``path: reason`` with paths like ``cameras[2].zones[0].points``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

M = TypeVar("M", bound=BaseModel)


class ConfigError(ValueError):
    """A config file could not be loaded. ``problems`` lists (path, message) pairs."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = [f"{source}: {len(problems)} problem(s)"]
        lines += [f"  {path or '<root>'}: {msg}" for path, msg in problems]
        super().__init__("\n".join(lines))


class Strict(BaseModel):
    """Base for every config section: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def substitute_env(node: Any, env: dict[str, str], problems: list[tuple[str, str]], path: str = "") -> Any:
    """Replace ``${VAR}`` / ``${VAR:-default}`` in every string; a missing VAR is a problem at ``path``."""
    if isinstance(node, dict):
        return {k: substitute_env(v, env, problems, _join(path, str(k))) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute_env(v, env, problems, f"{path}[{i}]") for i, v in enumerate(node)]
    if isinstance(node, str) and "${" in node:

        def repl(m: re.Match[str]) -> str:
            name, default = m.group(1), m.group(2)
            if name in env:
                return env[name]
            if default is not None:
                return default
            problems.append((path, f"environment variable {name} is not set (use ${{{name}:-default}})"))
            return ""

        return _ENV_RE.sub(repl, node)
    return node


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def format_loc(loc: tuple[int | str, ...]) -> str:
    """('cameras', 2, 'zones', 0, 'points') → 'cameras[2].zones[0].points'."""
    out = ""
    for part in loc:
        out = out + f"[{part}]" if isinstance(part, int) else _join(out, str(part))
    return out


def pydantic_problems(err: ValidationError, docs_hint: str = "the documentation") -> list[tuple[str, str]]:
    problems = []
    for e in err.errors(include_url=False):
        loc = tuple(p for p in e["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = f"unknown key (check the spelling; allowed keys are in {docs_hint})"
        problems.append((format_loc(loc), msg))
    return problems


def read_yaml(path: Path) -> Any:
    """``yaml.safe_load`` of a file; unreadable files and syntax errors become ConfigError with line/column."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(str(path), [("", f"cannot read file: {e.strerror or e}")]) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        reason = getattr(e, "problem", None) or str(e)
        raise ConfigError(str(path), [(where, f"YAML syntax error: {reason}")]) from None


def validate_document(
    model: type[M], data: Any, source: str, env: dict[str, str] | None = None, docs_hint: str = "the documentation"
) -> M:
    """Substitute the environment into a parsed document and validate it as ``model``. Raises ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(source, [("", "the file must be a YAML mapping of keys to values")])
    problems: list[tuple[str, str]] = []
    data = substitute_env(data, dict(os.environ) if env is None else env, problems)
    if problems:
        raise ConfigError(source, problems)
    try:
        return model.model_validate(data)
    except ValidationError as e:
        raise ConfigError(source, pydantic_problems(e, docs_hint)) from None
