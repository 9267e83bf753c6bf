"""Import a project's code in isolation and create its LightningModule and data source.

Each project is imported as a package of its own, named after the project and its commit
(``volunteer_project_<org_name>_<sha12>``), whose ``__path__`` is the project folder. Nothing is added to
``sys.path``, so two projects (or two commits of one) in a process never share a module, and a project's
``model.py`` can never shadow another ``model`` module. Inside a project, files import each other relatively
(``from .data import make_loader``). Errors in the project's code become one-line :class:`ProjectError`s that
name the file and line.

The package is imported from Python source only: its folder (and every folder below it) is read by a finder
that knows ``.py`` files and nothing else, with a loader that compiles the source it shows and never reads or
writes bytecode. A ``__pycache__`` or a native extension module planted in a snapshot is never imported, and
importing a project writes nothing into its folder (see docs/security.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import re
import sys
import traceback
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

from volunteer.errors import ProjectError
from volunteer.project.manifest import DOCS, CodeRef
from volunteer.project.prepared import BuiltProject, ResolvedProject

BUILTIN_PACKAGE = "volunteer.demo"
PACKAGE_PREFIX = "volunteer_project_"


def package_name(project: ResolvedProject) -> str:
    """The module name the project's folder is imported as: unique to the project and its commit (or content)."""
    if project.kind == "builtin":
        return BUILTIN_PACKAGE
    if project.kind == "hub":
        label, tag = project.repo, project.revision[:12]
    else:
        label, tag = project.root.name, _fingerprint(project)
    return PACKAGE_PREFIX + re.sub(r"\W+", "_", label).strip("_").lower() + "_" + tag


def _fingerprint(project: ResolvedProject) -> str:
    """A local folder has no commit: its path and code name it, so edited code is imported afresh."""
    digest = hashlib.sha256(str(project.root).encode())
    for file in project.files:
        digest.update(b"\0" + file.encode() + b"\0")
        with contextlib.suppress(OSError):
            digest.update((project.root / file).read_bytes())
    return digest.hexdigest()[:12]


class SourceOnlyLoader(importlib.machinery.SourceFileLoader):
    """Compiles a module from its ``.py`` source every time: no bytecode is read, none is written."""

    def get_code(self, fullname: str) -> Any:
        path = self.get_filename(fullname)
        return self.source_to_code(self.get_data(path), path)

    def set_data(self, path: str, data: object, *, _mode: int = 0o666) -> None:
        """Never called by :meth:`get_code`; refuses writes from any other path of the import system."""


_SOURCE_ROOTS: set[str] = set()


def _source_only_hook(path: str) -> importlib.machinery.FileFinder:
    if any(path == root or path.startswith(root + os.sep) for root in _SOURCE_ROOTS):
        return importlib.machinery.FileFinder(path, (SourceOnlyLoader, importlib.machinery.SOURCE_SUFFIXES))
    raise ImportError("not a project folder")


def source_only(root: Path) -> None:
    """Import every module under ``root`` from its ``.py`` source only, in this process."""
    folder = str(root)
    if _source_only_hook not in sys.path_hooks:
        sys.path_hooks.insert(0, _source_only_hook)
    _SOURCE_ROOTS.add(folder)
    for cached in [p for p in sys.path_importer_cache if p == folder or p.startswith(folder + os.sep)]:
        del sys.path_importer_cache[cached]


def import_package(project: ResolvedProject) -> ModuleType:
    """The project's package, created on first use."""
    name = package_name(project)
    if name in sys.modules:
        return sys.modules[name]
    if project.kind == "builtin":
        return importlib.import_module(name)
    source_only(project.root)
    init = project.root / "__init__.py"
    if init.is_file():
        spec = importlib.util.spec_from_file_location(
            name,
            init,
            loader=SourceOnlyLoader(name, str(init)),
            submodule_search_locations=[str(project.root)],
        )
    else:
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [str(project.root)]
    assert spec is not None
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    if spec.loader is not None:
        try:
            spec.loader.exec_module(package)
        except BaseException as e:
            del sys.modules[name]
            if isinstance(e, Exception):
                raise _code_error(project, "__init__.py", e, "importing the project's __init__.py") from e
            raise
    return package


def import_file(project: ResolvedProject, file: str) -> ModuleType:
    """Import one of the project's files (``"src/model.py"``) as a module of its package."""
    package = import_package(project)
    dotted = file[: -len(".py")].replace("/", ".")
    name = f"{package.__name__}.{dotted}"
    try:
        return importlib.import_module(name)
    except Exception as e:
        raise _code_error(project, file, e, f"importing {file}") from e


def load_object(project: ResolvedProject, ref: CodeRef, key: str) -> Any:
    """The class or function ``ref`` names, imported from the project."""
    module = import_file(project, ref.file)
    try:
        return getattr(module, ref.name)
    except AttributeError:
        raise ProjectError(
            f"{project.where()}: key '{key}': {ref.file} defines no {ref.name} once imported",
            f"define {ref.name} at the top level of {ref.file}, or fix {key}",
        ) from None


def build_project(project: ResolvedProject, batch_size: int | None = None) -> BuiltProject:
    """Import the project's code in isolation and create its LightningModule and data source.

    Args:
        project: The project the volunteer consented to run (``PreparedProject.project``).
        batch_size: Samples per local step (``--batch-size``); the manifest's ``batch_size`` when ``None``.

    Raises:
        ProjectError: when the code fails to import or to create the objects, naming the file, line and fix.
    """
    from lightning.pytorch import LightningDataModule, LightningModule

    manifest = project.manifest
    size = batch_size if batch_size is not None else manifest.batch_size
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise ProjectError(f"batch size must be a whole number above 0, got {size!r}", "pass --batch-size 32, say")

    model_ref = manifest.model.ref
    model_class = load_object(project, model_ref, "model.class_path")
    _require_subclass(project, model_class, model_ref, "model.class_path", LightningModule)
    module = _create(project, model_class, model_ref, "model.init_args", manifest.model.init_args)

    data = manifest.data
    data_key = f"data.{data.kind}"
    source = load_object(project, data.ref, data_key)
    arguments = {**data.init_args, data.batch_size_arg: size}
    if data.kind == "datamodule":
        _require_subclass(project, source, data.ref, data_key, LightningDataModule)
        datamodule = _create(project, source, data.ref, "data.init_args", arguments)
        return BuiltProject(module=module, datamodule=datamodule, train_dataloaders=None, batch_size=size)
    if isinstance(source, type) or not callable(source):
        raise ProjectError(
            f"{project.where()}: key '{data_key}': {data.ref.name} in {data.ref.file} is not a function",
            "data.dataloader names a function returning dataloaders; a LightningDataModule class goes in "
            "data.datamodule",
        )
    loaders = _create(project, source, data.ref, "data.init_args", arguments)
    if loaders is None:
        raise ProjectError(
            f"{project.where()}: key '{data_key}': {data.ref.name}() in {data.ref.file} returned None",
            f"make {data.ref.name} return a DataLoader (or what Trainer.fit(train_dataloaders=...) takes)",
        )
    return BuiltProject(module=module, datamodule=None, train_dataloaders=loaders, batch_size=size)


def _require_subclass(project: ResolvedProject, value: Any, ref: CodeRef, key: str, base: type) -> None:
    if isinstance(value, type) and issubclass(value, base):
        return
    if isinstance(value, type):
        own = package_name(project) + "."
        bases = (f"{b.__module__.removeprefix(own)}.{b.__qualname__}" for b in value.__bases__)
        what = f"class deriving from {', '.join(bases)}"
    else:
        what = type(value).__name__
    hint = f"make it a subclass of lightning.pytorch.{base.__name__}, or point {key} at the class that is"
    if isinstance(value, type) and any(c.__module__.startswith("pytorch_lightning") for c in value.__mro__):
        hint = (
            f"it derives from pytorch_lightning.{base.__name__}, a separate package: import lightning.pytorch as pl "
            f"and derive from pl.{base.__name__}"
        )
    raise ProjectError(
        f"{project.where()}: key '{key}': {ref.name} in {ref.file} is not a {base.__name__} (it is a {what})", hint
    )


def _create(project: ResolvedProject, factory: Any, ref: CodeRef, key: str, arguments: dict[str, Any]) -> Any:
    try:
        return factory(**arguments)
    except Exception as e:
        raise _code_error(project, ref.file, e, f"{ref.name}(...) with [{key}]", key=key) from e


def _code_error(
    project: ResolvedProject, file: str, error: Exception, doing: str, key: str | None = None
) -> ProjectError:
    """One line naming where in the project's code ``error`` happened, and a hint for its kind."""
    where = _project_location(project, error.__traceback__) or project.where(file)
    message = _one_line(error)
    if isinstance(error, SyntaxError) and error.filename:
        location = _relative(project, error.filename) or file
        return ProjectError(
            f"{project.where(location)} line {error.lineno}: syntax error: {error.msg}",
            f"fix the syntax of {location} (python -m py_compile {location} shows it); or use an earlier revision "
            "of the project (org/name@<commit sha>)",
        )
    if isinstance(error, ModuleNotFoundError) and error.name:
        top = error.name.split(".")[0]
        if (project.root / f"{top}.py").is_file() or (project.root / top).is_dir():
            return ProjectError(
                f"{where}: 'import {error.name}' looks for a top-level module, but {top} is a file of the project",
                f"inside a project, import its own files relatively: 'from . import {top}' or "
                f"'from .{top} import ...'; see {DOCS}",
            )
        return ProjectError(
            f"{where}: {doing} needs the Python package {top!r}, which is not installed",
            f"install it into volunteer's environment (pip install {top}), or ask the project to drop it",
        )
    if isinstance(error, ImportError):
        return ProjectError(f"{where}: {doing} failed: {message}", "fix the import at that line of the project")
    if isinstance(error, TypeError) and key is not None and where == project.where(file):
        return ProjectError(
            f"{project.where()}: key '{key}': {doing} failed: {message}",
            f"make [{key}] match the parameters of the class or function; see {DOCS}",
        )
    fix = f"fix [{key}] in volunteer.toml, or the code at that line" if key else "fix the code at that line"
    return ProjectError(f"{where}: {doing} raised {message}", f"{fix}; or use an earlier revision of the project")


def _project_location(project: ResolvedProject, tb: TracebackType | None) -> str | None:
    """``<project file> line N`` of the innermost traceback frame inside the project folder."""
    found = None
    for frame in traceback.extract_tb(tb):
        relative = _relative(project, frame.filename)
        if relative is not None:
            found = f"{project.where(relative)} line {frame.lineno}"
    return found


def _relative(project: ResolvedProject, filename: str) -> str | None:
    root = str(project.root)
    if filename.startswith(root + "/"):
        return filename[len(root) + 1 :]
    try:
        return Path(filename).resolve().relative_to(project.root.resolve()).as_posix()
    except (ValueError, OSError):
        return None


def _one_line(error: Exception) -> str:
    lines = str(error).strip().splitlines()
    text = lines[0] if lines else ""
    if len(text) > 200:
        text = text[:197] + "..."
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
