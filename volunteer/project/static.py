"""Checks of a project's code that read it without running it: files exist, names are defined, arguments fit.

Everything here parses source with :mod:`ast`; nothing of the project is executed, so these checks run before
the volunteer has consented to run the project's code, and report mistakes before torch is even loaded.
What cannot be decided from the source (a base class imported from elsewhere) is left to the import.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from volunteer.errors import ProjectError
from volunteer.project.files import walk_folder
from volunteer.project.manifest import DOCS, MANIFEST_NAME, CodeRef, Manifest

# Base classes that are certainly not what a key asks for, when written directly.
_NOT_MODULES = {"object", "Module", "nn.Module", "torch.nn.Module", "LightningDataModule", "Dataset"}
_NOT_DATAMODULES = {"object", "Module", "nn.Module", "torch.nn.Module", "LightningModule", "Dataset", "DataLoader"}


@dataclass(frozen=True)
class _Definition:
    kind: str
    """"class", "function" or "other" (imported or assigned: known only once imported)."""
    node: ast.AST | None
    tree: ast.Module


def check_project_code(
    manifest: Manifest,
    root: Path,
    describe: Callable[[str], str],
    *,
    files: tuple[str, ...] | None = None,
    present: Callable[[str], bool] | None = None,
) -> None:
    """Check the files and names the manifest points at.

    Args:
        manifest: The validated manifest.
        root: The project folder.
        describe: How messages name a file of the project, e.g. ``org/name@1a2b3c4:model.py``.
        files: The project's Python files (those a code reference may name); default: those in ``root``.
        present: Whether a file is part of the project (for the peers file, which may not be downloaded yet);
            default: whether it is in ``root``.

    Raises:
        ProjectError: a file that is missing or has a syntax error, a name that is not defined, a class where a
            function is needed (or the reverse), a class that is certainly not a LightningModule or
            LightningDataModule, or init arguments the class or function does not take.
    """
    if files is None:
        files = tuple(path for path, _ in walk_folder(root) if path.endswith(".py"))
    if present is None:
        present = lambda file: (root / file).is_file()  # noqa: E731
    try:
        _check_code(manifest, root, describe, files, present)
    except (RecursionError, MemoryError):
        raise _too_deep(describe(MANIFEST_NAME), "the code the manifest names") from None


def _too_deep(where: str, what: str) -> ProjectError:
    return ProjectError(
        f"{where}: nested too deeply to be read (an expression or block deeper than Python can parse)",
        f"simplify {what}: split long expressions and deeply nested blocks; data belongs in a data file",
    )


def _check_code(
    manifest: Manifest,
    root: Path,
    describe: Callable[[str], str],
    files: tuple[str, ...],
    present: Callable[[str], bool],
) -> None:
    where = describe(MANIFEST_NAME)
    model = _definition(root, manifest.model.ref, "model.class_path", describe, files)
    _check_kind(model, manifest.model.ref, "model.class_path", "class", where, "LightningModule")
    _check_bases(model, manifest.model.ref, "model.class_path", where, "LightningModule", _NOT_MODULES)
    _check_args(model, manifest.model.ref, "model.init_args", manifest.model.init_args, where)

    data_key = f"data.{manifest.data.kind}"
    data_ref = manifest.data.ref
    data = _definition(root, data_ref, data_key, describe, files)
    args = {**manifest.data.init_args, manifest.data.batch_size_arg: None}
    if manifest.data.kind == "datamodule":
        _check_kind(data, data_ref, data_key, "class", where, "LightningDataModule")
        _check_bases(data, data_ref, data_key, where, "LightningDataModule", _NOT_DATAMODULES)
    else:
        _check_kind(data, data_ref, data_key, "function", where, "dataloader")
    _check_args(data, data_ref, "data.init_args", args, where, batch_size_arg=manifest.data.batch_size_arg)

    if manifest.peers.file is not None and not present(manifest.peers.file):
        raise ProjectError(
            f"{where}: key 'peers.file': {manifest.peers.file} does not exist in the project",
            f"add {manifest.peers.file} (one multiaddress a line) to the project, or remove peers.file",
        )


def _definition(
    root: Path, ref: CodeRef, key: str, describe: Callable[[str], str], files: tuple[str, ...]
) -> _Definition:
    where = describe(MANIFEST_NAME)
    path = root / ref.file
    if ref.file not in files or not path.is_file():
        present = ", ".join(files[:8]) or "none"
        raise ProjectError(
            f"{where}: key '{key}': file {ref.file} does not exist in the project",
            f"add {ref.file} or fix the path (relative to the project folder; Python files here: {present})",
        )
    try:
        source = path.read_text(encoding="utf-8")
        tree = ast.parse(source, filename=ref.file)
    except SyntaxError as e:
        raise ProjectError(
            f"{describe(ref.file)} line {e.lineno}: syntax error: {e.msg}",
            f"fix the syntax of {ref.file} (try: python -m py_compile {ref.file})",
        ) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ProjectError(f"{describe(ref.file)} cannot be read: {e}", f"save {ref.file} as UTF-8 text") from None
    except ValueError as e:  # null bytes (Python 3.11 raises ValueError, later versions SyntaxError)
        raise ProjectError(f"{describe(ref.file)} cannot be parsed: {e}", f"save {ref.file} as Python text") from None
    except (RecursionError, MemoryError):
        raise _too_deep(describe(ref.file), ref.file) from None
    found = _find(tree.body, ref.name)
    if found is None:
        defined = sorted(
            node.name for node in tree.body if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        )
        listing = ", ".join(defined[:10]) or "nothing"
        raise ProjectError(
            f"{where}: key '{key}': {ref.name} is not defined in {ref.file}",
            f"define {ref.name} at the top level of {ref.file}, or fix the name ({ref.file} defines: {listing})",
        )
    return _Definition(found[0], found[1], tree)


def _find(body: list[ast.stmt], name: str) -> tuple[str, ast.AST | None] | None:
    """The last top-level definition of ``name`` (including inside if/try blocks)."""
    result: tuple[str, ast.AST | None] | None = None
    for node in body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            result = ("class", node)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == name:
            result = ("function", node)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for alias in node.names:
                if (alias.asname or alias.name.split(".")[0]) == name:
                    result = ("other", None)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                result = ("other", None)
        elif isinstance(node, (ast.If, ast.Try)):
            blocks = [node.body, node.orelse]
            if isinstance(node, ast.Try):
                blocks += [node.finalbody, *(handler.body for handler in node.handlers)]
            for block in blocks:
                inner = _find(block, name)
                if inner is not None:
                    result = inner
    return result


def _check_kind(found: _Definition, ref: CodeRef, key: str, wanted: str, where: str, what: str) -> None:
    if found.kind in (wanted, "other"):
        return
    if wanted == "class":
        raise ProjectError(
            f"{where}: key '{key}': {ref.name} in {ref.file} is a function, not a {what} class",
            f"point {key} at a subclass of lightning.pytorch.{what}"
            + ("; a function returning dataloaders goes in data.dataloader" if key == "data.datamodule" else ""),
        )
    raise ProjectError(
        f"{where}: key '{key}': {ref.name} in {ref.file} is a class, not a function",
        f"a LightningDataModule class goes in data.datamodule = {str(ref)!r}; data.dataloader names a function "
        "that returns dataloaders",
    )


def _check_bases(found: _Definition, ref: CodeRef, key: str, where: str, base: str, wrong: set[str]) -> None:
    if found.kind != "class" or not isinstance(found.node, ast.ClassDef):
        return
    verdict = _inherits(found.node, found.tree, base, wrong, set())
    if verdict is False:
        written = ", ".join(ast.unparse(b) for b in found.node.bases) or "nothing"
        raise ProjectError(
            f"{where}: key '{key}': {ref.name} in {ref.file} is not a {base} (it derives from {written})",
            f"make it a subclass: class {ref.name}(lightning.pytorch.{base}), or point {key} at the class that is",
        )


def _inherits(node: ast.ClassDef, tree: ast.Module, base: str, wrong: set[str], seen: set[str]) -> bool | None:
    """True if it certainly derives from ``base``, False if certainly not, None when the source cannot tell."""
    if node.name in seen:
        return None
    seen = seen | {node.name}
    if not node.bases:
        return False
    verdicts: list[bool | None] = []
    for written in node.bases:
        text = ast.unparse(written)
        if text.split(".")[-1] == base:
            return True
        local = _find(tree.body, text) if isinstance(written, ast.Name) else None
        if local is not None and local[0] == "class" and isinstance(local[1], ast.ClassDef):
            verdicts.append(_inherits(local[1], tree, base, wrong, seen))
        elif text in wrong:
            verdicts.append(False)
        else:
            verdicts.append(None)
    if any(v is True for v in verdicts):
        return True
    if all(v is False for v in verdicts):
        return False
    return None


def _check_args(
    found: _Definition,
    ref: CodeRef,
    key: str,
    args: dict[str, object],
    where: str,
    *,
    batch_size_arg: str | None = None,
) -> None:
    function = found.node
    if isinstance(function, ast.ClassDef):
        function = next(
            (n for n in function.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"),
            None,
        )
        if function is None:
            return  # inherited __init__: checked when the class is created
        skip = 1  # self
    elif isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
        skip = 0
    else:
        return
    a = function.args
    positional = [*a.posonlyargs, *a.args]
    own = positional[0].arg if skip and positional else None
    required = [p.arg for p in positional[: len(positional) - len(a.defaults)] if p.arg != own]
    required += [p.arg for p, default in zip(a.kwonlyargs, a.kw_defaults, strict=True) if default is None]
    for name in required:
        if name not in args:
            raise ProjectError(
                f"{where}: key '{key}': {ref.name} in {ref.file} needs argument {name!r}, which is not given",
                f"add {name} = ... under [{key}] (or give the parameter a default in {ref.file})",
            )
    if a.kwarg is not None:
        return
    accepted = {p.arg for p in a.args if p.arg != own} | {p.arg for p in a.kwonlyargs}
    for name in args:
        if name in accepted:
            continue
        taken = ", ".join(sorted(accepted)) or "none"
        if name == batch_size_arg:
            raise ProjectError(
                f"{where}: key 'data.batch_size_arg': {ref.name} in {ref.file} takes no argument {name!r}",
                f"add a {name} parameter to {ref.name}, or set batch_size_arg to the parameter that receives the batch "
                f"size (it takes: {taken})",
            )
        raise ProjectError(
            f"{where}: key '{key}': {ref.name} in {ref.file} takes no argument {name!r}",
            f"remove {name} from [{key}] or fix its spelling ({ref.name} takes: {taken}); see {DOCS}",
        )
