"""The render controls at the edges: ``talkfarm render`` options and request-file columns.

Both are generated from the fields of :class:`core.schemas.RenderControls`, the one
declaration of every control (type, default, bounds, help text); this module adds only how a
value is written down. The kind of a field comes from its type, and one parser per kind reads
a command-line argument and a request-file cell alike:

==============  =============================================  ==========================================
kind (type)     command line                                   request-file column(s)
==============  =============================================  ==========================================
int             ``--sampling-steps 20``                        ``sampling_steps``: 20, "20" or 20.0
float           ``--audio-guidance 0.7``                       ``audio_guidance``
bool            ``--paste-back`` / ``--no-paste-back``         ``paste_back``: true/false/1/0/yes/no
text (str)      ``--language es``                              ``language``
pair            ``--gaze 10,-5``                               ``gaze_yaw``, ``gaze_pitch`` (both or neither)
name or vector  ``--emotion happy``, ``--emotion 0.1,-0.2,..``  ``emotion``: a name, "0.1,-0.2,..",
                                                               "[0.1, -0.2, ..]" or a list (JSONL, Parquet)
==============  =============================================  ==========================================

A field whose type none of these kinds covers stops the import with a TypeError, so a new
control cannot silently go missing from the CLI or the request files. Pydantic then checks
bounds and names (one set of rules, in ``RenderControls``). This module imports no torch:
``talkfarm render --help`` and request validation stay fast.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import types
import typing
from dataclasses import dataclass
from typing import Any, Collection, Mapping

from pydantic import ValidationError

from core.errors import BadInputError
from core.schemas import RenderControls
from core.transcripts import read_transcript

__all__ = ["Control", "CONTROLS", "CONTROL_COLUMNS", "ControlValueError", "is_blank", "parse_int",
           "add_control_options", "controls_from_args", "control_values_from_row", "validation_message",
           "option_name"]

_TRUE = {"true", "1", "yes", "y", "t", "on"}
_FALSE = {"false", "0", "no", "n", "f", "off"}
_NAME = re.compile(r"^[A-Za-z][A-Za-z_-]*$")


class ControlValueError(ValueError):
    """A control's value could not be read (the message names the option or column)."""


def is_blank(value: Any) -> bool:
    """An empty cell: None, whitespace, or a float NaN (Parquet / pandas nulls): "use the default"."""
    return value is None or (isinstance(value, str) and not value.strip()) or (
        isinstance(value, float) and math.isnan(value))


def parse_int(value: Any, label: str) -> int:
    """An integer from an int, an integral float or text ("20", "20.0"); never from a bool."""
    if isinstance(value, bool):
        raise ControlValueError(f"{label} must be an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if value.is_integer():
            return int(value)
        raise ControlValueError(f"{label} must be an integer, got {value!r}")
    text = str(value).strip()
    try:
        return int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            raise ControlValueError(f"{label} must be an integer, got {text!r}") from None
        if number.is_integer():
            return int(number)
        raise ControlValueError(f"{label} must be an integer, got {text!r}") from None


def parse_float(value: Any, label: str) -> float:
    """A finite number from a number or text; never from a bool."""
    if isinstance(value, bool):
        raise ControlValueError(f"{label} must be a number, got {value!r}")
    try:
        number = float(value if not isinstance(value, str) else value.strip())
    except (TypeError, ValueError):
        raise ControlValueError(f"{label} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ControlValueError(f"{label} must be a finite number, got {value!r}")
    return number


def parse_bool(value: Any, label: str) -> bool:
    """A bool from a bool or true/false/1/0/yes/no/on/off (any case)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ControlValueError(f"{label} must be true or false, got {value!r}")


def parse_text(value: Any, label: str) -> str:
    """Text, surrounding whitespace removed."""
    return str(value).strip()


def parse_pair(value: Any, label: str, parts: tuple[str, str]) -> tuple[float, float]:
    """Two numbers from "A,B" or a two-item list."""
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or len(items) != 2:
        example = ",".join(part.upper() for part in parts)
        raise ControlValueError(f"{label} must be two numbers {example}, e.g. 10,-5; got {value!r}")
    return parse_float(items[0], label), parse_float(items[1], label)


def parse_name_or_vector(value: Any, label: str) -> str | tuple[float, ...]:
    """A name (lower-cased; the model checks it is known) or a vector of numbers, written as
    "0.1,-0.2", a JSON list "[0.1, -0.2]" or a list."""
    if isinstance(value, str):
        text = value.strip()
        if _NAME.match(text):
            return text.lower()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                raise ControlValueError(f"{label} vector is not a valid JSON list: {text!r}") from None
        else:
            value = text.split(",")
    if isinstance(value, (list, tuple)) and value:
        return tuple(parse_float(item, label) for item in value)
    raise ControlValueError(f"{label} must be a name or a list of numbers, got {value!r}")


_KINDS = ("int", "float", "bool", "text", "pair", "name_or_vector")


def _kind(name: str, annotation: Any) -> str:
    """The kind of a RenderControls field, from its type (``X | None`` reads as X)."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        members = [arg for arg in args if arg is not type(None)]
        if len(members) == 1:
            return _kind(name, members[0])
        if set(members) == {str, tuple[float, ...]}:
            return "name_or_vector"
    elif annotation in (bool, int, float):
        return annotation.__name__
    elif annotation is str:
        return "text"
    elif typing.get_origin(annotation) is tuple and args == (float, float):
        return "pair"
    raise TypeError(f"RenderControls.{name} has type {annotation!r}, which pipeline.controls cannot read from "
                    f"the command line or a request file; give it one of the kinds {', '.join(_KINDS)} or add one")


@dataclass(frozen=True)
class Control:
    """One field of RenderControls, as the command line and the request files write it.

    Attributes:
        name: the field name; the request-file column (``gaze``: one column per part).
        kind: one of int, float, bool, text, pair, name_or_vector (from the field's type).
        default: the field's default (RenderControls' own: shown in help, never re-applied).
        description: the field's description, the help text.
        minimum, maximum: the field's bounds (ge / le), None where unbounded.
        choices: the names a text or name field accepts (help only; the model checks them).
        parts: a pair's two part names (``("yaw", "pitch")``).
        text_file: on the command line the value may be a path to a UTF-8 ``.txt`` file.
        negative_help: what ``--no-NAME`` does, for a bool whose default is on.
    """

    name: str
    kind: str
    default: Any
    description: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    parts: tuple[str, ...] = ()
    text_file: bool = False
    negative_help: str | None = None

    @property
    def flag(self) -> str:
        """The command-line option: ``--sampling-steps`` for ``sampling_steps``."""
        return option_name(self.name)

    @property
    def columns(self) -> tuple[str, ...]:
        """The request-file columns: the field name, or ``gaze_yaw``, ``gaze_pitch`` for a pair."""
        if self.kind == "pair":
            return tuple(f"{self.name}_{part}" for part in self.parts)
        return (self.name,)

    def parse(self, value: Any, label: str) -> Any:
        """The field's value from a CLI argument or a request-file cell (``label`` names it in errors)."""
        if self.kind == "int":
            return parse_int(value, label)
        if self.kind == "float":
            return parse_float(value, label)
        if self.kind == "bool":
            return parse_bool(value, label)
        if self.kind == "pair":
            return parse_pair(value, label, self.parts)
        if self.kind == "name_or_vector":
            return parse_name_or_vector(value, label)
        return parse_text(value, label)

    def from_row(self, row: Mapping[str, Any]) -> Any:
        """The value a request-file row gives, or None for an empty cell / absent column."""
        if self.kind == "pair":
            cells = [row.get(column) for column in self.columns]
            if all(is_blank(cell) for cell in cells):
                return None
            if any(is_blank(cell) for cell in cells):
                raise ControlValueError(f"give both {' and '.join(self.columns)}, or neither")
            return tuple(parse_float(cell, column) for cell, column in zip(cells, self.columns))
        cell = row.get(self.name)
        return None if is_blank(cell) else self.parse(cell, self.name)

    @property
    def metavar(self) -> str:
        if self.kind == "pair":
            return ",".join(part.upper() for part in self.parts)
        if self.text_file:
            return "TEXT_OR_FILE"
        if self.choices and self.kind == "text":
            return "{" + ",".join(self.choices) + "}"
        if self.kind == "name_or_vector":
            return "NAME_OR_VECTOR"
        return {"int": "N", "float": "X"}.get(self.kind, self.name.upper())

    @property
    def help(self) -> str:
        """Help text for ``--help``: the description, then bounds, names and default."""
        notes = []
        if self.minimum is not None and self.maximum is not None:
            notes.append(f"{self.minimum:g} to {self.maximum:g}")
        elif self.minimum is not None:
            notes.append(f"at least {self.minimum:g}")
        if self.kind == "name_or_vector" and self.choices:
            notes.append(f"names: {', '.join(self.choices)}; a vector as comma-separated numbers")
        if self.text_file:
            notes.append("on the command line: the text, or a path to a UTF-8 .txt file holding it")
        if self.kind == "bool":
            notes.append("default: on" if self.default else "default: off")
        elif self.default is not None:
            notes.append(f"default: {self.default}")
        text = self.description + (f" ({'; '.join(notes)})" if notes else "")
        if self.negative_help:
            text += f". --no-{self.flag[2:]}: {self.negative_help}"
        return text.replace("%", "%%")          # argparse formats help strings with %


def _controls() -> tuple[Control, ...]:
    controls = []
    for name, field in RenderControls.model_fields.items():
        extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
        bounds = {type(m).__name__: m for m in field.metadata}
        controls.append(Control(
            name=name, kind=_kind(name, field.annotation), default=field.default,
            description=field.description or name.replace("_", " "),
            minimum=getattr(bounds.get("Ge"), "ge", None), maximum=getattr(bounds.get("Le"), "le", None),
            choices=tuple(extra.get("choices", ())), parts=tuple(extra.get("parts", ())),
            text_file=bool(extra.get("text_file")), negative_help=extra.get("negative_help")))
        if controls[-1].kind == "pair" and len(controls[-1].parts) != 2:
            raise TypeError(f"RenderControls.{name} is a pair: name its two parts in json_schema_extra['parts']")
    return tuple(controls)


CONTROLS: tuple[Control, ...] = _controls()
CONTROL_COLUMNS: tuple[str, ...] = tuple(column for control in CONTROLS for column in control.columns)


def validation_message(err: ValidationError, label=lambda name: name) -> str:
    """Pydantic's errors as one line, each led by ``label(field name)``."""
    parts = []
    for error in err.errors():
        loc = ".".join(str(part) for part in error["loc"] if part != "controls")
        message = error["msg"].removeprefix("Value error, ")
        parts.append(f"{label(loc)}: {message}" if loc else message)
    return "; ".join(parts)


# ---------------------------------------------------------------------------- command line

def add_control_options(parser: argparse.ArgumentParser, only: Collection[str] | None = None) -> None:
    """One option per RenderControls field (``only``: just those fields), in a "render controls"
    group. The options keep the raw text (an option not given is absent from the namespace, so
    RenderControls' own default applies); :func:`controls_from_args` parses them."""
    pairs = "; ".join(f"{control.name} as {' and '.join(control.columns)}"
                      for control in CONTROLS if control.kind == "pair")
    group = parser.add_argument_group(
        "render controls", f"Each is also a column of a `talkfarm batch` request file, named as the option with _ "
                           f"for - ({pairs}); an empty cell takes the default.")
    for control in CONTROLS:
        if only is not None and control.name not in only:
            continue
        if control.kind == "bool":
            group.add_argument(control.flag, dest=control.name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=control.help)
        else:
            group.add_argument(control.flag, dest=control.name, default=argparse.SUPPRESS,
                               metavar=control.metavar, help=control.help)


def option_name(field: str) -> str:
    """The command-line option of a field: ``--sampling-steps`` for ``sampling_steps``."""
    return "--" + field.replace("_", "-")


def controls_from_args(args: argparse.Namespace) -> RenderControls:
    """The validated RenderControls of the options given; BadInputError (one line, naming
    the option) for a value that cannot be read or breaks the model's rules."""
    values: dict[str, Any] = {}
    for control in CONTROLS:
        if not hasattr(args, control.name):
            continue
        raw = getattr(args, control.name)
        try:
            values[control.name] = control.parse(raw, control.flag)
        except ControlValueError as err:
            raise BadInputError(str(err)) from None
        if control.text_file:
            values[control.name] = read_transcript(values[control.name])
    try:
        return RenderControls(**values)
    except ValidationError as err:
        raise BadInputError(validation_message(err, option_name)) from None


# ---------------------------------------------------------------------------- request files

def control_values_from_row(row: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """RenderControls keyword arguments from one request-file row: ``defaults`` first, then
    each control's non-empty cells (ControlValueError for one that cannot be read)."""
    values = dict(defaults or {})
    for control in CONTROLS:
        value = control.from_row(row)
        if value is not None:
            values[control.name] = value
    return values

