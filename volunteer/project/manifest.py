"""The project manifest, ``volunteer.toml``: one typed model, and errors that name the file, the key and the fix.

Loading a manifest reads and validates text only: it never imports the project's code, torch, Lightning or
hivemind, so that every mistake is reported at once, before anything heavy starts.
"""

from __future__ import annotations

import difflib
import re
import sys
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from volunteer.errors import ProjectError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

MANIFEST_NAME = "volunteer.toml"
DOCS = "docs/projects.md"

Compression = Literal["none", "float16", "scaled-float16", "uniform8bit", "quantile8bit"]
GradCompression = Literal["none", "float16", "scaled-float16", "uniform8bit", "quantile8bit", "powersgd"]
Mode = Literal["sync", "local", "diloco"]
Precision = Literal["32-true", "16-mixed", "bf16-mixed"]

_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_VERSION = re.compile(r"^\d+(\.\d+){0,3}$")

PositiveInt = Annotated[int, Field(strict=True, gt=0)]
PositiveFloat = Annotated[float, Field(strict=True, gt=0)]
Text = Annotated[str, Field(strict=True)]
Flag = Annotated[bool, Field(strict=True)]


class FieldProblem(ValueError):
    """A value that has the right type but cannot work; carries its own hint."""

    def __init__(self, problem: str, hint: str, key: str | None = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.hint = hint
        self.key = key
        """The dotted key to name, when not the one validated (a check across keys)."""


def check_relative_path(value: str, *, python: bool) -> str:
    """Check a path written in the manifest: relative, inside the project folder, importable when ``python``."""
    if not value or value != value.strip():
        raise FieldProblem(
            f"{value!r} is not a file name", 'write a path relative to the project folder, e.g. "model.py"'
        )
    if "\\" in value:
        raise FieldProblem(f"{value!r} uses backslashes", "separate folders with '/', e.g. \"src/model.py\"")
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts:
        raise FieldProblem(
            f"{value!r} leaves the project folder",
            "a project may only name files inside its own folder: write a relative path without '..', "
            'e.g. "model.py" or "src/model.py"',
        )
    if python:
        if path.suffix != ".py":
            raise FieldProblem(f"{value!r} is not a Python file", 'name a .py file, e.g. "model.py:MyModel"')
        bad = [part for part in (*path.parts[:-1], path.stem) if not _IDENTIFIER.match(part)]
        if bad:
            fixed = re.sub(r"\W", "_", bad[0])
            raise FieldProblem(
                f"{value!r} cannot be imported: {bad[0]!r} is not a Python module name",
                f"rename it to a name made of letters, digits and underscores, e.g. {fixed!r}",
            )
    return str(path)


class CodeRef(str):
    """``"file.py:Name"``: a class or function defined in a file of the project."""

    @property
    def file(self) -> str:
        return self.rsplit(":", 1)[0]

    @property
    def name(self) -> str:
        return self.rsplit(":", 1)[1]

    @classmethod
    def parse(cls, value: str, example: str) -> CodeRef:
        """Check ``value``; ``example`` is a correct line for the hint, e.g. ``class_path = "model.py:MyModel"``."""
        if value.count(":") != 1:
            raise FieldProblem(f'{value!r} is not of the form "file.py:Name"', f"write e.g. {example}")
        file, name = value.split(":")
        if not _IDENTIFIER.match(name):
            raise FieldProblem(f"{name!r} in {value!r} is not a Python name", f"write e.g. {example}")
        return cls(f"{check_relative_path(file, python=True)}:{name}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSection(_Section):
    """``[model]``: the LightningModule every volunteer trains."""

    class_path: Text
    """``"file.py:ClassName"`` of a ``lightning.pytorch.LightningModule`` subclass."""
    init_args: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments for the class."""

    @field_validator("class_path")
    @classmethod
    def _class_path(cls, value: str) -> str:
        return CodeRef.parse(value, 'class_path = "model.py:MyModel"')

    @property
    def ref(self) -> CodeRef:
        return CodeRef(self.class_path)


class DataSection(_Section):
    """``[data]``: where training batches come from: a LightningDataModule class or a dataloader function."""

    datamodule: Text | None = None
    """``"file.py:ClassName"`` of a ``lightning.pytorch.LightningDataModule`` subclass."""
    dataloader: Text | None = None
    """``"file.py:function"`` returning what ``Trainer.fit(train_dataloaders=...)`` takes."""
    init_args: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments for the class or function (the batch size is passed separately)."""
    batch_size_arg: Text = "batch_size"
    """The argument of the class or function that receives the per-volunteer batch size."""

    @field_validator("datamodule", "dataloader")
    @classmethod
    def _ref(cls, value: str | None) -> str | None:
        return None if value is None else CodeRef.parse(value, 'datamodule = "data.py:MyData"')

    @field_validator("batch_size_arg")
    @classmethod
    def _batch_size_arg(cls, value: str) -> str:
        if not _IDENTIFIER.match(value):
            raise FieldProblem(f"{value!r} is not a Python argument name", 'write e.g. batch_size_arg = "batch_size"')
        return value

    @model_validator(mode="after")
    def _one_source(self) -> DataSection:
        if (self.datamodule is None) == (self.dataloader is None):
            raise FieldProblem(
                "give exactly one of datamodule or dataloader" + (", not both" if self.datamodule is not None else ""),
                'under [data] write either datamodule = "data.py:MyDataModule" or dataloader = "data.py:make_loader"',
            )
        if self.batch_size_arg in self.init_args:
            raise FieldProblem(
                f"init_args sets {self.batch_size_arg!r}, which volunteer passes itself",
                f"remove {self.batch_size_arg} from [data.init_args]; set the default with batch_size at the top "
                "of the manifest (volunteers may override it with --batch-size)",
                key="data.init_args",
            )
        return self

    @property
    def kind(self) -> Literal["datamodule", "dataloader"]:
        return "datamodule" if self.datamodule is not None else "dataloader"

    @property
    def ref(self) -> CodeRef:
        return CodeRef(self.datamodule or self.dataloader or "")


class HivemindSection(_Section):
    """``[hivemind]``: how the swarm averages."""

    matchmaking_time: PositiveFloat = 5.0
    """Seconds to gather peers for an averaging round (keep it above 3: hivemind's request timeout)."""
    averaging_timeout: PositiveFloat = 30.0
    """Seconds after which a hanging averaging round is cancelled."""
    load_state_timeout: PositiveFloat = 600.0
    """Seconds to wait when a newcomer downloads the model state from a peer."""
    grad_compression: GradCompression = "none"
    """Compression of averaged gradients (sync) or of the averaged parameter change (diloco); "powersgd": sync only."""
    powersgd_rank: PositiveInt | None = None
    """Rank of PowerSGD's low-rank factors (with ``grad_compression = "powersgd"``; default 4)."""
    state_averaging_compression: Compression = "none"
    load_state_compression: Compression = "none"
    reuse_grad_buffers: Flag = False
    """Accumulate gradients in ``.grad`` (saves memory; the module's ``optimizer_zero_grad`` is not called)."""
    average_state_every: PositiveInt | None = None
    """Average parameters every this many global steps (1 when not set); in diloco mode, average the global
    copy every this many outer steps (never when not set)."""

    @model_validator(mode="after")
    def _timeouts(self) -> HivemindSection:
        if self.averaging_timeout <= self.matchmaking_time:
            raise FieldProblem(
                f"averaging_timeout ({self.averaging_timeout:g}) must be longer than matchmaking_time "
                f"({self.matchmaking_time:g})",
                "make averaging_timeout several times matchmaking_time, e.g. matchmaking_time = 5.0 and "
                "averaging_timeout = 30.0",
                key="hivemind.averaging_timeout",
            )
        if self.powersgd_rank is not None and self.grad_compression != "powersgd":
            raise FieldProblem(
                f'powersgd_rank is set but grad_compression is "{self.grad_compression}"',
                'set grad_compression = "powersgd" to use it, or remove powersgd_rank',
                key="hivemind.powersgd_rank",
            )
        return self


class TrainingSection(_Section):
    """``[training]``: how volunteers combine their work (docs/projects.md#training-modes)."""

    mode: Mode = "sync"
    """"sync": every global step averages gradients; "local": every peer steps on its own gradients and
    parameters are averaged every ``hivemind.average_state_every`` global steps; "diloco": every peer takes
    ``inner_steps`` steps of the project's optimizer, then the averaged parameter change goes through an outer
    Nesterov SGD step."""
    inner_steps: PositiveInt | None = None
    """diloco: local optimizer steps each volunteer takes between outer steps (default 100)."""
    outer_lr: PositiveFloat | None = None
    """diloco: learning rate of the outer SGD (default 0.7)."""
    outer_momentum: Annotated[float, Field(strict=True, ge=0, lt=1)] | None = None
    """diloco: Nesterov momentum of the outer SGD (default 0.9)."""

    @model_validator(mode="after")
    def _diloco_only(self) -> TrainingSection:
        if self.mode != "diloco":
            for key in ("inner_steps", "outer_lr", "outer_momentum"):
                if getattr(self, key) is not None:
                    raise FieldProblem(
                        f'{key} is a setting of mode "diloco", but mode is "{self.mode}"',
                        f'set mode = "diloco" under [training], or remove {key}',
                        key=f"training.{key}",
                    )
        return self


DILOCO_DEFAULTS = {"inner_steps": 100, "outer_lr": 0.7, "outer_momentum": 0.9}
POWERSGD_DEFAULT_RANK = 4


class PeersSection(_Section):
    """``[peers]``: where a volunteer finds the swarm."""

    file: Text | None = None
    """A file in the project: one multiaddress a line, ``#`` starts a comment."""
    url: Text | None = None
    """An http(s) URL answering a JSON list of multiaddresses, or plain text like the file."""
    url_timeout: PositiveFloat = 5.0
    """Seconds to wait for the URL."""

    @field_validator("file")
    @classmethod
    def _file(cls, value: str | None) -> str | None:
        return None if value is None else check_relative_path(value, python=False)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^https?://[^\s/]+", value):
            raise FieldProblem(f"{value!r} is not an http(s) URL", 'write e.g. url = "https://example.org/peers.json"')
        return value


class Requirements(_Section):
    """``[requirements]``: what a volunteer's machine needs. Checked when the session starts."""

    gpu: Literal["required", "optional"] = "optional"
    min_gpu_memory_gb: Annotated[float, Field(strict=True, ge=0)] = 0.0
    min_client_version: Text | None = None

    @field_validator("min_client_version")
    @classmethod
    def _version(cls, value: str | None) -> str | None:
        if value is not None and not _VERSION.match(value):
            raise FieldProblem(f"{value!r} is not a version number", 'write e.g. min_client_version = "0.1.0"')
        return value


class Manifest(_Section):
    """A project's ``volunteer.toml``."""

    name: Text
    """The project's name, shown to volunteers."""
    description: Text = ""
    run_id: Text
    """The swarm's name: every peer with the same run id trains together. Change it to start a new swarm."""
    target_batch_size: PositiveInt
    """Samples the whole swarm accumulates before each global optimizer step."""
    batch_size: PositiveInt
    """Samples per local step on one volunteer, unless the volunteer overrides it with ``--batch-size``."""
    precision: Precision | None = None
    """Lightning precision ("32-true", "16-mixed", "bf16-mixed"); ``None``: Lightning's default (32-true)."""
    model: ModelSection
    data: DataSection
    hivemind: HivemindSection = Field(default_factory=HivemindSection)
    training: TrainingSection = Field(default_factory=TrainingSection)
    peers: PeersSection = Field(default_factory=PeersSection)
    requirements: Requirements = Field(default_factory=Requirements)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not value.strip() or len(value) > 100 or "\n" in value:
            raise FieldProblem(
                f"{value!r} is not a usable project name", 'write one line, e.g. name = "MNIST together"'
            )
        return value.strip()

    @field_validator("run_id")
    @classmethod
    def _run_id(cls, value: str) -> str:
        if not _RUN_ID.match(value):
            raise FieldProblem(
                f"{value!r} is not a run id",
                'use letters, digits, "_", "-" and "." (at most 100, starting with a letter or digit), '
                'e.g. run_id = "mnist-v1"',
            )
        return value

    @model_validator(mode="after")
    def _batch_sizes(self) -> Manifest:
        if self.batch_size > self.target_batch_size:
            raise FieldProblem(
                f"batch_size ({self.batch_size}) is larger than target_batch_size ({self.target_batch_size})",
                "the swarm would step after every local batch: raise target_batch_size well above batch_size",
                key="batch_size",
            )
        return self

    @model_validator(mode="after")
    def _mode_combinations(self) -> Manifest:
        mode, h = self.training.mode, self.hivemind
        if mode != "sync" and h.grad_compression == "powersgd":
            raise FieldProblem(
                f'grad_compression = "powersgd" compresses gradient averaging, which mode "{mode}" does not do',
                'use mode = "sync" with PowerSGD, or a compression such as "float16" or "uniform8bit" for '
                + (
                    "the averaged parameter change"
                    if mode == "diloco"
                    else "parameter averaging (state_averaging_compression)"
                ),
                key="hivemind.grad_compression",
            )
        if mode == "local" and h.grad_compression != "none":
            raise FieldProblem(
                f'grad_compression = "{h.grad_compression}" has no effect in mode "local": no gradients are averaged',
                "remove grad_compression; compress parameter averaging with state_averaging_compression instead",
                key="hivemind.grad_compression",
            )
        if mode != "sync" and h.reuse_grad_buffers:
            raise FieldProblem(
                f'reuse_grad_buffers cannot be used in mode "{mode}": every local step applies its own gradients',
                "remove reuse_grad_buffers (or set it to false)",
                key="hivemind.reuse_grad_buffers",
            )
        return self

    def strategy_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for :class:`volunteer.strategy.HivemindStrategy` (imports hivemind)."""
        h = self.hivemind
        return {
            "run_id": self.run_id,
            "target_batch_size": self.target_batch_size,
            "matchmaking_time": h.matchmaking_time,
            "averaging_timeout": h.averaging_timeout,
            "load_state_timeout": h.load_state_timeout,
            "reuse_grad_buffers": h.reuse_grad_buffers,
            **({"average_state_every": h.average_state_every} if h.average_state_every is not None else {}),
            "grad_compression": None if h.grad_compression == "powersgd" else make_compression(h.grad_compression),
            "state_averaging_compression": make_compression(h.state_averaging_compression),
            "load_state_compression": make_compression(h.load_state_compression),
            **self.mode_kwargs(),
        }

    def mode_kwargs(self) -> dict[str, Any]:
        """The ``HivemindStrategy`` arguments of the training mode and PowerSGD (no imports)."""
        t = self.training
        kwargs: dict[str, Any] = {"mode": t.mode}
        if t.mode == "diloco":
            kwargs.update(
                inner_steps=t.inner_steps or DILOCO_DEFAULTS["inner_steps"],
                outer_lr=t.outer_lr if t.outer_lr is not None else DILOCO_DEFAULTS["outer_lr"],
                outer_momentum=t.outer_momentum if t.outer_momentum is not None else DILOCO_DEFAULTS["outer_momentum"],
            )
        if self.hivemind.grad_compression == "powersgd":
            kwargs["powersgd_rank"] = self.hivemind.powersgd_rank or POWERSGD_DEFAULT_RANK
        return kwargs


def make_compression(name: str) -> Any:
    """A hivemind compression object for one of the :data:`Compression` names."""
    from hivemind import compression

    classes = {
        "none": compression.NoCompression,
        "float16": compression.Float16Compression,
        "scaled-float16": compression.ScaledFloat16Compression,
        "uniform8bit": compression.Uniform8BitQuantization,
        "quantile8bit": compression.Quantile8BitQuantization,
    }
    return classes[name]()


# Examples for hints, by dotted key: what a correct line looks like.
EXAMPLES: dict[str, str] = {
    "name": '"MNIST together"',
    "description": '"Volunteers train a digit classifier"',
    "run_id": '"mnist-v1"',
    "target_batch_size": "4096",
    "batch_size": "32",
    "precision": '"16-mixed"',
    "model": '{ class_path = "model.py:MyModel" }',
    "model.class_path": '"model.py:MyModel"',
    "model.init_args": "{ hidden_dim = 128 }",
    "data": '{ datamodule = "data.py:MyData" }',
    "data.datamodule": '"data.py:MyDataModule"',
    "data.dataloader": '"data.py:make_loader"',
    "data.init_args": "{ num_workers = 2 }",
    "data.batch_size_arg": '"batch_size"',
    "hivemind.matchmaking_time": "5.0",
    "hivemind.averaging_timeout": "30.0",
    "hivemind.load_state_timeout": "600.0",
    "hivemind.grad_compression": '"float16"',
    "hivemind.state_averaging_compression": '"float16"',
    "hivemind.load_state_compression": '"none"',
    "hivemind.reuse_grad_buffers": "false",
    "hivemind.average_state_every": "1",
    "hivemind.powersgd_rank": "4",
    "training.mode": '"sync"',
    "training.inner_steps": "100",
    "training.outer_lr": "0.7",
    "training.outer_momentum": "0.9",
    "peers.file": '"peers.txt"',
    "peers.url": '"https://example.org/peers.json"',
    "peers.url_timeout": "5.0",
    "requirements.gpu": '"optional"',
    "requirements.min_gpu_memory_gb": "8",
    "requirements.min_client_version": '"0.1.0"',
}

_SECTIONS: dict[str, type[_Section]] = {
    "model": ModelSection,
    "data": DataSection,
    "hivemind": HivemindSection,
    "training": TrainingSection,
    "peers": PeersSection,
    "requirements": Requirements,
}


def read_manifest(path: Path, where: str) -> Manifest:
    """Read and validate a manifest; ``where`` names the file in messages (e.g. ``org/name@1a2b3c4:volunteer.toml``).

    Raises:
        ProjectError: for a missing or unreadable file, a TOML syntax error, or any invalid key, with a hint.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ProjectError(
            f"{where}: the project has no {MANIFEST_NAME} at its root",
            f"a project folder needs a {MANIFEST_NAME} manifest next to its code; see {DOCS} for a complete example",
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ProjectError(f"{where}: cannot be read: {e}", "save it as UTF-8 text readable by this user") from None
    return parse_manifest(text, where)


def parse_manifest(text: str, where: str) -> Manifest:
    """Validate manifest text; see :func:`read_manifest`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ProjectError(
            f"{where}: not valid TOML: {e}",
            f'fix the syntax at that line: strings need quotes (name = "x"), tables are [section]; see {DOCS}',
        ) from None
    except (RecursionError, MemoryError):
        raise _too_deep(where) from None
    try:
        return Manifest.model_validate(data)
    except ValidationError as e:
        raise _explain(e, where) from None
    except (RecursionError, MemoryError):
        raise _too_deep(where) from None


def _too_deep(where: str) -> ProjectError:
    return ProjectError(
        f"{where}: nested too deeply to be read (arrays or tables inside each other beyond what can be parsed)",
        f"a manifest holds settings: flatten the nested values (see {DOCS})",
    )


def _explain(error: ValidationError, where: str) -> ProjectError:
    """The first validation problem as one line and a hint; the count of any others is mentioned."""
    problems = error.errors()
    first = problems[0]
    more = f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})" if len(problems) > 1 else ""
    loc = [str(part) for part in first["loc"]]
    key = ".".join(loc)
    kind = first["type"]
    value = first.get("input")
    example = EXAMPLES.get(key)
    leaf = loc[-1] if loc else ""
    placement = _placement(loc)

    if kind == "missing" and key in _SECTIONS:
        first_key = "class_path" if key == "model" else "datamodule"
        return ProjectError(
            f"{where}: missing section [{key}]{more}",
            f"add a [{key}] table with {first_key} = {EXAMPLES[key + '.' + first_key]}; see {DOCS}",
        )
    if kind == "missing":
        line = f"{leaf} = {example}" if example else f"{leaf} = ..."
        return ProjectError(f"{where}: missing key '{key}'{more}", f"add {line} {placement}; see {DOCS}")
    if kind == "extra_forbidden":
        return ProjectError(f"{where}: unknown key '{key}'{more}", _unknown_key_hint(loc))
    if kind == "value_error" and isinstance(first.get("ctx", {}).get("error"), FieldProblem):
        problem: FieldProblem = first["ctx"]["error"]
        key = problem.key or key
        subject = f"key '{key}'" if key else "manifest"
        return ProjectError(f"{where}: {subject}: {problem.problem}{more}", problem.hint)
    expected = _expected(kind, first)
    fix = f"write {leaf} = {example} {placement}" if example and leaf else f"see {DOCS} for the format"
    return ProjectError(
        f"{where}: key '{key}' must be {expected}, got {_describe(value)}{more}",
        fix,
    )


def _placement(loc: list[str]) -> str:
    if len(loc) <= 1:
        return "at the top of the manifest, above the first [section]"
    return f"under [{'.'.join(loc[:-1])}]"


def _unknown_key_hint(loc: list[str]) -> str:
    leaf = loc[-1]
    if len(loc) == 1:
        allowed = list(Manifest.model_fields)
        close = difflib.get_close_matches(leaf, allowed, n=1)
        guess = f"did you mean '{close[0]}'? " if close else ""
        return f"{guess}remove it or fix its spelling; top-level keys are: {', '.join(allowed)}"
    section = loc[0]
    model = _SECTIONS.get(section)
    allowed = list(model.model_fields) if model else []
    if leaf in Manifest.model_fields and leaf not in _SECTIONS:
        return (
            f"'{leaf}' is a top-level key: in TOML every key after [{section}] belongs to that section, so move "
            f"{leaf} = ... above the first [section]"
        )
    close = difflib.get_close_matches(leaf, allowed, n=1)
    guess = f"did you mean '{close[0]}'? " if close else ""
    return f"{guess}remove it or fix its spelling; keys allowed under [{section}] are: {', '.join(allowed)}"


def _expected(kind: str, error: Any) -> str:
    ctx = error.get("ctx") or {}
    table = {
        "int_type": "a whole number",
        "float_type": "a number",
        "string_type": "a string in quotes",
        "bool_type": "true or false",
        "dict_type": "a table",
        "model_type": "a table ([section] or { key = value })",
        "model_attributes_type": "a table ([section] or { key = value })",
    }
    if kind in table:
        return table[kind]
    if kind == "greater_than":
        return f"greater than {ctx.get('gt')}"
    if kind == "less_than":
        return f"less than {ctx.get('lt')}"
    if kind == "greater_than_equal":
        return f"at least {ctx.get('ge')}"
    if kind == "literal_error":
        return f"one of {ctx.get('expected')}"
    return error.get("msg", "valid").lower()


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f"the string {value!r}"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)
