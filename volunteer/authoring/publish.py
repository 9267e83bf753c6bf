"""``volunteer publish DIR --repo org/name``: check a project folder, then upload it to the Hub as one commit.

A project that fails ``check`` is never uploaded. The repository is created when needed; the folder's files
(without caches, virtual environments, Lightning's logs and what ``.gitignore`` files exclude) go up in a
single commit whose parent is the
commit read just before, so a commit made meanwhile (a ``volunteer host`` refreshing the peers file) is never
overwritten unseen. The peers file already on the Hub is kept unless ``--replace-peers``: ``volunteer host``
maintains it there. The command prints the commit sha and the exact command volunteers run.

A published project is public (or shared with every reader): files whose names start with a dot (``.env``,
``.netrc``) and files that look like credentials (by name, or holding a token or private key) are refused
unless ``--include-dotfiles`` / ``--include-credentials`` say they are meant to go up.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from volunteer.authoring.check import CheckReport, check_project
from volunteer.authoring.hubwrite import hub_api, hub_errors
from volunteer.authoring.options import non_negative_int, repo_id
from volunteer.datadir import DataDir
from volunteer.errors import ConfigError
from volunteer.project.files import LOCAL_SKIPPED_DIRS, refusal
from volunteer.project.ids import parse_project_id
from volunteer.project.manifest import MANIFEST_NAME, read_manifest
from volunteer.settings import ArgumentParser, add_run_options, settings_from_namespace

DEFAULT_CHECK_STEPS = 2
SKIPPED_FILES = {".DS_Store"}
SKIPPED_SUFFIXES = (".pyc", ".pyo")
SKIPPED_FOLDERS = LOCAL_SKIPPED_DIRS | {"lightning_logs", ".ipynb_checkpoints", "checkpoints"}
KEPT_REMOTE = {".gitattributes"}
ALLOWED_DOTFILES = {".gitignore", ".gitattributes"}
"""Dotfiles that hold no secret and are published as they are."""
CREDENTIAL_NAMES = re.compile(
    r"""(^|/)(
        \.?env(\..*)?|\.netrc|_netrc|\.pypirc|\.npmrc|\.git-credentials|\.htpasswd|\.pgpass|
        credentials(\.\w+)?|.*secrets?(\.\w+)?|token(\.\w+)?|.*\.token|
        id_(rsa|dsa|ecdsa|ed25519)(\.pub)?|.*\.(pem|key|p12|pfx|jks|keystore|kdbx|ovpn|asc|gpg)|
        service[-_]?account.*\.json|client_secret.*\.json
    )$""",
    re.IGNORECASE | re.VERBOSE,
)
"""File names that usually hold a secret."""
CREDENTIAL_TEXT = re.compile(
    rb"hf_[A-Za-z0-9]{30,}|-----BEGIN [A-Z ]*PRIVATE KEY-----|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36}"
    rb"|xox[abposr]-[A-Za-z0-9-]{10,}|sk-[A-Za-z0-9]{32,}"
)
"""Access tokens and private keys, as they appear in a file (Hub, AWS, GitHub, Slack, OpenAI)."""
SCANNED_BYTES = 1_000_000
DOCKER_COMMAND = "docker run --gpus all --shm-size=1g -it -v volunteer-data:/data volunteer --project {project}"


@dataclass(frozen=True)
class Published:
    """What ``publish`` did."""

    repo: str
    sha: str
    """The commit volunteers should pin."""
    created: bool
    """True when the repository did not exist before."""
    changed: bool
    """False when every file was already on the Hub as it is here (no new commit)."""
    uploaded: tuple[str, ...]
    deleted: tuple[str, ...]
    kept_peers_file: str | None
    """The peers file left as it is on the Hub (``volunteer host`` maintains it), if any."""
    stale: tuple[str, ...]
    """Files on the Hub that this folder does not have, left there (``--delete-missing`` removes them)."""
    endpoint: str
    peers_url: str | None = None
    """The manifest's ``[peers] url``, if any."""
    check: CheckReport | None = None


def project_files(folder: Path, *, include_dotfiles: bool = False, include_credentials: bool = False) -> list[str]:
    """The files ``publish`` uploads, relative to ``folder`` with ``/`` separators, sorted.

    Raises:
        ConfigError: the folder holds dotfiles or credential-looking files (unless included), or files that
            volunteers' clients refuse (compiled or native code).
    """
    files = []
    for relative in _walk(folder):
        if relative.split("/")[-1] in SKIPPED_FILES or relative.endswith(SKIPPED_SUFFIXES):
            continue
        files.append(relative)
    refused = [(f, why) for f in files if (why := refusal(f))]
    if refused:
        path, why = refused[0]
        raise ConfigError(
            f"{folder / path} is {why}, which volunteers' clients refuse to run",
            "a project ships Python source only: delete it (or ignore it in .gitignore) and publish the .py source",
        )
    dotfiles = [f for f in files if _dotted(f)]
    if dotfiles and not include_dotfiles:
        raise ConfigError(
            f"publish would upload dotfiles, which often hold secrets: {_some(dotfiles)}",
            "ignore them in .gitignore (publish honours it) or delete them; if they are meant to be public, pass "
            "--include-dotfiles",
        )
    secrets = [f for f in files if _looks_like_credentials(folder / f, f)]
    if secrets and not include_credentials:
        raise ConfigError(
            f"publish would upload files that look like credentials (a token or key): {_some(secrets)}",
            "remove the secret, or ignore the files in .gitignore; if they hold no secret, pass --include-credentials",
        )
    return files


def _walk(folder: Path) -> list[str]:
    """Every file under ``folder``, without skipped folders, links, and what its .gitignore files exclude."""
    from pathspec import GitIgnoreSpec

    found: list[str] = []
    ignores: list[tuple[str, GitIgnoreSpec]] = []  # (folder prefix, its .gitignore), outermost first
    for here, dirs, names in os.walk(folder):
        prefix = Path(here).relative_to(folder).as_posix()
        prefix = "" if prefix == "." else prefix + "/"
        ignores = [(p, spec) for p, spec in ignores if prefix.startswith(p)]
        gitignore = Path(here) / ".gitignore"
        if gitignore.is_file() and not gitignore.is_symlink():
            try:
                ignores.append((prefix, GitIgnoreSpec.from_lines(gitignore.read_text(errors="replace").splitlines())))
            except (OSError, ValueError) as e:
                raise ConfigError(
                    f"{gitignore} cannot be read: {e}", "fix the patterns in it (git check-ignore -v shows them)"
                ) from None

        kept = []
        for name in sorted(dirs):
            path = Path(here) / name
            if name in SKIPPED_FOLDERS or path.is_symlink() or _ignored(ignores, prefix + name + "/"):
                continue
            kept.append(name)
        dirs[:] = kept
        for name in sorted(names):
            path = Path(here) / name
            if path.is_symlink() or not path.is_file() or _ignored(ignores, prefix + name):
                continue
            found.append(prefix + name)
    return sorted(found)


def _check_required(folder: Path, files: list[str]) -> None:
    """The manifest and the files it names must go up: a .gitignore that leaves one out breaks the project."""
    if MANIFEST_NAME not in files:
        raise ConfigError(
            f"{folder / MANIFEST_NAME} would not be uploaded (it is missing, or a .gitignore excludes it)",
            f"create {MANIFEST_NAME} (volunteer init writes one), or remove its pattern from .gitignore",
        )
    manifest = read_manifest(folder / MANIFEST_NAME, str(folder / MANIFEST_NAME))
    needed = [manifest.model.ref.file, manifest.data.ref.file, manifest.peers.file]
    for file in needed:
        if file is not None and file not in files:
            raise ConfigError(
                f"{folder / file} would not be uploaded, but the manifest names it (a .gitignore excludes it, or it "
                "is a link)",
                "remove its pattern from .gitignore (git check-ignore -v shows which), or make it a plain file",
            )


def _ignored(ignores: list[tuple[str, Any]], relative: str) -> bool:
    """Whether a .gitignore of a folder above ``relative`` (a folder ends with '/') excludes it."""
    return any(spec.match_file(relative[len(prefix) :]) for prefix, spec in ignores)


def _dotted(path: str) -> bool:
    parts = path.split("/")
    return any(part.startswith(".") for part in parts[:-1]) or (
        parts[-1].startswith(".") and parts[-1] not in ALLOWED_DOTFILES
    )


def _looks_like_credentials(path: Path, relative: str) -> bool:
    if CREDENTIAL_NAMES.search(relative):
        return True
    try:
        with path.open("rb") as f:
            return CREDENTIAL_TEXT.search(f.read(SCANNED_BYTES)) is not None
    except OSError:
        return False


def _some(files: list[str]) -> str:
    shown = ", ".join(files[:8])
    return shown + (f" and {len(files) - 8} more" if len(files) > 8 else "")


def publish_folder(
    folder: Path,
    repo: str,
    *,
    endpoint: str | None = None,
    private: bool = False,
    message: str | None = None,
    replace_peers: bool = False,
    delete_missing: bool = False,
    check: CheckReport | None = None,
    include_dotfiles: bool = False,
    include_credentials: bool = False,
) -> Published:
    """Upload a (checked) project folder to ``repo`` as one commit; see the module docstring.

    Raises:
        ProjectError: the folder has no valid manifest.
        HubWriteError: the Hub cannot be reached, or refuses (not logged in, no write access ...).
    """
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete
    from huggingface_hub.errors import RevisionNotFoundError

    manifest = read_manifest(folder / MANIFEST_NAME, str(folder / MANIFEST_NAME))
    api, shown = hub_api(endpoint)
    with hub_errors(api, shown, repo, "create the repository"):
        existed = api.repo_exists(repo)
        if not existed:
            api.create_repo(repo, private=private, exist_ok=True)
    with hub_errors(api, shown, repo, "read the repository"):
        try:
            info = api.repo_info(repo, revision="main", timeout=30)
            parent, remote = info.sha, {s.rfilename for s in info.siblings or ()}
        except RevisionNotFoundError:  # a repository without any commit yet
            parent, remote = None, set()

    local = project_files(folder, include_dotfiles=include_dotfiles, include_credentials=include_credentials)
    uploaded = list(local)
    peers_file = manifest.peers.file
    kept_peers = None
    if peers_file and peers_file in remote and not replace_peers and peers_file in uploaded:
        uploaded.remove(peers_file)
        kept_peers = peers_file
    stale = sorted(remote - set(local) - KEPT_REMOTE - ({kept_peers} if kept_peers else set()))
    deleted = stale if delete_missing else []
    operations: list[CommitOperationAdd | CommitOperationDelete] = [
        CommitOperationAdd(path_in_repo=file, path_or_fileobj=str(folder / file)) for file in uploaded
    ]
    operations += [CommitOperationDelete(path_in_repo=file) for file in deleted]
    summary = message or f"volunteer publish: {manifest.name} (run {manifest.run_id})"
    with hub_errors(api, shown, repo, "upload to"), _quiet_hub_client():
        commit = api.create_commit(repo, operations=operations, commit_message=summary, parent_commit=parent)
    return Published(
        repo=repo,
        sha=commit.oid,
        created=not existed,
        changed=commit.oid != parent,
        uploaded=tuple(uploaded),
        deleted=tuple(deleted),
        kept_peers_file=kept_peers,
        stale=tuple(s for s in stale if s not in deleted),
        endpoint=shown,
        peers_url=manifest.peers.url,
        check=check,
    )


@contextlib.contextmanager
def _quiet_hub_client() -> Iterator[None]:
    """huggingface_hub warns "No files have been modified" itself; the report says it once, in its words."""
    logger = logging.getLogger("huggingface_hub")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def join_commands(repo: str, sha: str) -> tuple[str, str]:
    """The pinned ``docker run`` command and the plain one that follows ``main``."""
    return DOCKER_COMMAND.format(project=f"{repo}@{sha}"), f"volunteer --project {repo}"


def report_lines(result: Published) -> list[str]:
    lines = []
    if result.created:
        lines.append(f"created the repository {result.repo} on {result.endpoint}")
    if result.kept_peers_file:
        lines.append(
            f"kept {result.kept_peers_file} as it is on the Hub ('volunteer host' maintains it); --replace-peers "
            "uploads yours"
        )
    if result.deleted:
        lines.append(f"removed from the Hub: {', '.join(result.deleted)}")
    if result.stale:
        lines.append(
            f"note: the Hub also has {', '.join(result.stale)}, which this folder does not (--delete-missing removes "
            "them)"
        )
    if result.changed:
        lines.append(f"published {result.repo} at commit {result.sha} ({len(result.uploaded)} files)")
    else:
        lines.append(f"nothing changed: {result.repo} is already at commit {result.sha} with these files")
    lines.append(f"  {result.endpoint}/{result.repo}/tree/{result.sha}")
    pinned, plain = join_commands(result.repo, result.sha)
    lines += ["volunteers join with:", f"  {pinned}", f"  {plain}"]
    lines.append(
        "the first runs exactly this commit; the second follows main: new versions, and the peers file that "
        "'volunteer host' refreshes"
    )
    if result.peers_url is None:
        lines.append(
            "note: the pinned command reads this commit's peers file, which no host can refresh; for a list that stays "
            "fresh for it too, add [peers] url, served by 'volunteer host --peers-port 8472'"
        )
    lines.append(f"keep a stable peer online: volunteer host --project {result.repo}")
    return lines


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="volunteer publish",
        description="Check a project folder, then upload it to a Hugging Face Hub model repository (created when "
        "needed) as one commit, and print the commit sha and the command volunteers run. Needs a token with write "
        "access: HF_TOKEN, or 'hf auth login'.",
    )
    parser.add_argument("folder", metavar="DIR", help="the project folder (with volunteer.toml)")
    parser.add_argument("--repo", required=True, metavar="ORG/NAME", help="the Hub model repository to publish to")
    parser.add_argument("--private", action="store_true", help="create the repository private (if it is new)")
    parser.add_argument("--message", metavar="TEXT", help="the commit message")
    parser.add_argument(
        "--replace-peers",
        action="store_true",
        help="upload the local peers file even when the Hub has one (which 'volunteer host' maintains)",
    )
    parser.add_argument(
        "--delete-missing", action="store_true", help="remove files from the Hub that this folder does not have"
    )
    parser.add_argument(
        "--check-steps",
        default=None,
        metavar="N",
        help=f"training steps of the check before uploading; 0: import only (default {DEFAULT_CHECK_STEPS})",
    )
    parser.add_argument(
        "--include-dotfiles",
        action="store_true",
        help="upload files and folders whose names start with a dot (.env, .github/ ...); refused by default",
    )
    parser.add_argument(
        "--include-credentials",
        action="store_true",
        help="upload files that look like credentials (key files, tokens in the text); refused by default",
    )
    add_run_options(parser, ("data_dir", "endpoint"))
    return parser


def main(argv: Sequence[str]) -> int:
    args = build_parser().parse_args(list(argv))
    steps = non_negative_int("--check-steps", args.check_steps)
    steps = DEFAULT_CHECK_STEPS if steps is None else steps
    settings = settings_from_namespace(argparse.Namespace(data_dir=args.data_dir, endpoint=args.endpoint))
    ref = parse_project_id(args.folder)
    if ref.kind != "local":
        raise ConfigError(
            f"publish uploads a project folder; {args.folder!r} is not one",
            f"give the folder's path (./{args.folder}); 'volunteer check {args.folder}' checks a published project",
        )
    target = repo_id("--repo", args.repo)
    folder = Path(ref.repo)
    included = dict(include_dotfiles=args.include_dotfiles, include_credentials=args.include_credentials)
    _check_required(folder, project_files(folder, **included))  # refuses secrets before anything else runs
    print(f"checking {args.folder} before publishing ...", flush=True)
    report = check_project(
        settings.replace(project=ref.repo), DataDir.open(settings.data_dir), steps=steps, device="cpu"
    )
    trained = (
        f"{report.steps} training step{'s' if report.steps != 1 else ''} on cpu, " if report.steps else "imported, "
    )
    print(f"ok  {report.name!r} (run id {report.run_id}): {trained}{report.parameters:,} parameters")
    for note in report.notes:
        print(f"note: {note}")
    print(f"publishing to {target} ...", flush=True)
    result = publish_folder(
        folder,
        target,
        endpoint=settings.endpoint,
        private=args.private,
        message=args.message,
        replace_peers=args.replace_peers,
        delete_missing=args.delete_missing,
        check=report,
        **included,
    )
    for line in report_lines(result):
        print(line)
    return 0
