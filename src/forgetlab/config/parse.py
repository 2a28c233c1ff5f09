"""Reading configs: YAML files, `--set key=value` items, dotted keys, validation into one-line errors, and the
field descriptions that feed `--help`."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import UserError
from .core import Frozen


def set_dotted(data: dict, key: str, value: Any) -> None:
    """Set `data["a"]["b"] = value` for key "a.b", creating the nested dicts on the way."""
    parts = key.split(".")
    node = data
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise UserError(f"--set {key}: '{p}' is not a section; use a key such as train.lr")
    node[parts[-1]] = value


def parse_set(item: str) -> tuple[str, Any]:
    """'train.lr=5e-4' -> ("train.lr", 0.0005); values are parsed as YAML scalars or lists."""
    if "=" not in item:
        raise UserError(f"--set {item}: expected key=value, e.g. --set train.lr=5e-4")
    key, raw = item.split("=", 1)
    return key.strip(), yaml_value(raw)


def yaml_value(text: str) -> Any:
    """A value typed on the command line, read as YAML (5e-4 as a number too); the text itself if it is not YAML."""
    try:
        return _exponents(yaml.safe_load(text))
    except yaml.YAMLError:
        return text


_EXPONENT = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _exponents(value: Any) -> Any:
    """YAML 1.1 (PyYAML) reads 5e-4 as a string; a number is meant."""
    if isinstance(value, str) and _EXPONENT.fullmatch(value.strip()):
        return float(value)
    if isinstance(value, list):
        return [_exponents(v) for v in value]
    return value


def read_yaml(path: str | Path) -> dict:
    p = Path(path)
    if p.is_dir():
        raise UserError(f"config file {p} is a directory; pass a YAML file to --config (e.g. one under configs/)")
    if not p.is_file():
        raise UserError(f"config file {p} not found; pass an existing YAML file to --config")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        line = getattr(getattr(e, "problem_mark", None), "line", None)
        where = f" line {line + 1}" if line is not None else ""
        raise UserError(f"config file {p}{where}: not valid YAML ({getattr(e, 'problem', e)}); fix the syntax") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {p}: expected a mapping of sections at the top level")
    return data


def build_config(cls: type[Frozen], base: dict | None = None, overrides: dict[str, Any] | None = None,
                 sets: list[str] | None = None, source: str = "config") -> Frozen:
    """Merge a YAML dict, flag overrides (dotted keys) and `--set` items, then validate into `cls`."""
    data: dict = dict(base or {})
    for key, value in (overrides or {}).items():
        set_dotted(data, key, value)
    for item in sets or []:
        set_dotted(data, *parse_set(item))
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err["loc"])
        if not loc:  # a check across fields: its message says it all
            raise UserError(f"{source}: {err['msg'].removeprefix('Value error, ')}") from None
        if err["type"] == "extra_forbidden":
            raise UserError(f"{source}: unknown key '{loc}'; {key_hint(loc, field_names(cls))}") from None
        raise UserError(f"{source}: {loc}: {err['msg']} (got {err.get('input')!r}); fix it in the YAML or with --set") from None


def key_hint(key: str, valid, where: str = "") -> str:
    """'did you mean ...?' for a mistyped config key, else where the keys are listed (or all of them)."""
    import difflib

    close = difflib.get_close_matches(key, sorted(valid), n=3, cutoff=0.7)
    if close:
        return f"did you mean {', '.join(close)}?"
    return f"see `{where}` for the keys" if where else f"valid keys: {', '.join(valid)}"


def field_names(cls: type[BaseModel]) -> list[str]:
    """All dotted leaf keys of a config model, e.g. ['tasks', 'model.name', ...]."""
    return [key for key, _, _ in describe_fields(cls)]


def describe_fields(cls: type[BaseModel], prefix: str = "", defaults: BaseModel | None = None) -> list[tuple[str, Any, str]]:
    """(dotted key, default, description) for every leaf field: feeds `--help`.

    A section whose default is a customised instance (e.g. compare's landscape, off) reports that instance's values.
    """
    out = []
    for name, f in cls.model_fields.items():
        ann = f.annotation
        default = getattr(defaults, name) if defaults is not None else f.get_default(call_default_factory=True)
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            out += describe_fields(ann, f"{prefix}{name}.", default if isinstance(default, BaseModel) else None)
        else:
            out.append((prefix + name, default, f.description or ""))
    return out


def dump_yaml(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
