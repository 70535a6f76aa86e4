"""Typed settings that round-trip through plain dicts (JSON, TOML, provenance records).

:class:`DictConfig` is a mixin for dataclasses of settings: ``to_dict()`` gives plain JSON values
(tuples as lists) and ``Cls.from_dict(d)`` builds the object back, turning lists into tuples where a
field holds a tuple and rejecting unknown keys with a one-line :class:`~nex_interp.errors.ConfigError`
that names the valid ones. Defaults live only in the dataclass fields, so a config written beside a
result and read back is the same object (``from_dict(c.to_dict()) == c``, tested).
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from .errors import ConfigError

C = TypeVar("C", bound="DictConfig")


def _plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


class DictConfig:
    """Mixin: ``to_dict`` / ``from_dict`` for a dataclass of settings (see the module docstring)."""

    def to_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]

    @classmethod
    def from_dict(cls: type[C], d: dict) -> C:
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise ConfigError(f"{cls.__name__}: unknown setting(s) {', '.join(unknown)}; valid: {', '.join(fields)}")
        values = {}
        for name, value in d.items():
            default = fields[name].default
            if isinstance(value, list) and (isinstance(default, tuple) or "tuple" in str(fields[name].type)):
                value = tuple(value)
            values[name] = value
        return cls(**values)
