"""Typed config sections whose fields say everything once: default, type, bounds, choices, help.

A section is a frozen dataclass deriving from :class:`Section`, each field declared with
:func:`option`. From those declarations alone come

* :meth:`Section.from_dict`: validation of a TOML table (unknown keys, types, bounds, choices),
  each problem one :class:`~nex_interp.errors.ConfigError` line naming ``section.field``;
* :meth:`Section.to_dict`: the JSON-able table, which ``from_dict`` reads back to an equal object;
* :func:`add_flags` / :func:`flag_overrides`: one command-line flag per field
  (``--section-field``), parsed by the same rules and merged into the TOML document before it is
  validated.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

from nex_interp.errors import ConfigError

#: value kinds a field can have; "table" fields (free-form TOML tables) get no command-line flag
KINDS = ("str", "int", "float", "bool", "ints", "strs", "table")


def option(
    default: Any = dataclasses.MISSING,
    *,
    kind: str,
    help: str,
    minimum: float | None = None,
    choices: tuple[str, ...] | None = None,
    optional: bool = False,
) -> Any:
    """A dataclass field with its validation rules. No ``default``: the field is required.

    ``optional``: the field may be absent (``None``); ``minimum`` bounds numbers and list items;
    ``choices`` lists the values a string (or each string of a list) may take.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown field kind {kind!r}")
    meta = {"kind": kind, "help": help, "minimum": minimum, "choices": choices, "optional": optional}
    if isinstance(default, (dict, list)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata=meta)
    return field(default=default, metadata=meta)


def _bad(where: str, what: str, value: Any) -> ConfigError:
    return ConfigError(f"config field {where} must be {what}, got {value!r}")


def check_value(where: str, value: Any, meta: dict) -> Any:
    """``value`` checked against a field's rules and normalised (lists become tuples)."""
    kind, minimum, choices = meta["kind"], meta["minimum"], meta["choices"]
    if value is None and meta["optional"]:
        return None
    if kind == "str":
        if not isinstance(value, str) or not value.strip():
            raise _bad(where, "a non-empty string", value)
        if choices is not None and value not in choices:
            raise ConfigError(f"config field {where}: unknown value {value!r}; use one of {', '.join(choices)}")
        return value
    if kind == "bool":
        if not isinstance(value, bool):
            raise _bad(where, "true or false", value)
        return value
    if kind in ("int", "float"):
        ok = isinstance(value, int) if kind == "int" else isinstance(value, (int, float))
        if isinstance(value, bool) or not ok or (minimum is not None and value < minimum):
            what = "an integer" if kind == "int" else "a number"
            raise _bad(where, what + (f" >= {minimum}" if minimum is not None else ""), value)
        return value if kind == "int" else float(value)
    if kind == "ints":
        items = [value] if isinstance(value, int) and not isinstance(value, bool) else value
        if not isinstance(items, list) or not items or any(
            isinstance(x, bool) or not isinstance(x, int) or (minimum is not None and x < minimum) for x in items
        ):
            raise _bad(where, "a non-empty list of integers" + (f" >= {minimum}" if minimum is not None else ""), value)
        if len(set(items)) != len(items):
            raise ConfigError(f"config field {where} lists a value twice: {items!r}")
        return tuple(items)
    if kind == "strs":
        if not isinstance(value, list) or not value or not all(isinstance(x, str) for x in value):
            raise _bad(where, "a non-empty list of names", value)
        for x in value:
            if choices is not None and x not in choices:
                raise ConfigError(f"config field {where}: unknown value {x!r}; use one of {', '.join(choices)}")
        if len(set(value)) != len(value):
            raise ConfigError(f"config field {where} lists a value twice: {value!r}")
        return tuple(value)
    if not isinstance(value, dict):  # table
        raise ConfigError(f"config field {where} must be a table")
    return dict(value)


def check_keys(table: dict, where: str, valid: list[str] | tuple[str, ...]) -> None:
    """One-line error for the first key of ``table`` that is not in ``valid``."""
    unknown = sorted(set(table) - set(valid))
    if unknown:
        prefix = "" if where == "top level" else f"{where}."
        raise ConfigError(f"config field {prefix}{unknown[0]} is unknown; valid fields of [{where}]: {', '.join(sorted(valid))}")


@dataclass(frozen=True)
class Section:
    """Base of the config sections: validation, round trip and flags from the fields' declarations."""

    #: the TOML table this section is read from
    SECTION: ClassVar[str] = ""

    @classmethod
    def fields(cls) -> tuple[dataclasses.Field, ...]:
        return dataclasses.fields(cls)

    @classmethod
    def from_dict(cls, table: dict) -> "Section":
        """Validate the TOML table ``table`` into the section (defaults for absent fields)."""
        section = cls.SECTION
        if not isinstance(table, dict):
            raise ConfigError(f"config field {section} must be a table ([{section}])")
        check_keys(table, section, [f.name for f in cls.fields()])
        values = {}
        for f in cls.fields():
            where = f"{section}.{f.name}"
            if f.name in table:
                values[f.name] = check_value(where, table[f.name], dict(f.metadata))
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"config field {where} is missing")
        return cls(**values)

    def to_dict(self) -> dict:
        """The section as a JSON-able table (tuples become lists); ``from_dict`` reads it back."""
        out = {}
        for f in self.fields():
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else (dict(v) if isinstance(v, dict) else v)
        return out


# ---------------------------------------------------------------- command-line flags


def flag_name(section: str, name: str) -> str:
    """``--section-field`` (underscores become dashes)."""
    return "--" + f"{section}-{name}".replace("_", "-")


def _dest(section: str, name: str) -> str:
    return f"cfg__{section}__{name}"


def add_flags(parser: argparse.ArgumentParser, sections: list[type[Section]]) -> None:
    """One flag per field of ``sections`` (table fields excepted), grouped by section.

    A flag's value overrides the TOML file's; lists are comma-separated (``--sets-k 16,64``).
    """
    for cls in sections:
        group = parser.add_argument_group(f"[{cls.SECTION}] (override the config file)")
        for f in cls.fields():
            meta = f.metadata
            if meta["kind"] == "table":
                continue
            default = f.default if f.default is not dataclasses.MISSING else None
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                shown = "required in the file or here"
            else:
                shown = "unset by default" if default is None else f"default {_show(default)}"
            choices = f"; one of {', '.join(meta['choices'])}" if meta["choices"] else ""
            metavar = {"int": "N", "float": "X", "bool": "true|false", "ints": "N,N", "strs": "A,B"}.get(meta["kind"], "TEXT")
            group.add_argument(flag_name(cls.SECTION, f.name), dest=_dest(cls.SECTION, f.name), metavar=metavar,
                               default=None, help=f"{meta['help']} ({shown}{choices})".replace("%", "%%"))


def _show(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(value)


def _from_text(where: str, text: str, kind: str) -> Any:
    if kind == "bool":
        if text.lower() not in ("true", "false"):
            raise ConfigError(f"option {where}: {text!r} is not true or false")
        return text.lower() == "true"
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind == "ints":
            return [int(x) for x in text.split(",") if x.strip()]
        if kind == "strs":
            return [x.strip() for x in text.split(",") if x.strip()]
    except ValueError:
        raise ConfigError(f"option {where}: {text!r} is not {'a list of integers' if kind == 'ints' else 'a number'}") from None
    return text


def flag_overrides(args: argparse.Namespace, sections: list[type[Section]]) -> dict[str, dict]:
    """``{section: {field: value}}`` of the flags given on the command line (typed, not yet validated)."""
    out: dict[str, dict] = {}
    for cls in sections:
        for f in cls.fields():
            text = getattr(args, _dest(cls.SECTION, f.name), None)
            if text is not None:
                out.setdefault(cls.SECTION, {})[f.name] = _from_text(flag_name(cls.SECTION, f.name), text, f.metadata["kind"])
    return out
