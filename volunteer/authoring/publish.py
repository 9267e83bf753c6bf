"""``volunteer publish DIR --repo org/name``: check a project folder, then upload it to the Hub as one commit.

A project that fails ``check`` is never uploaded. The repository is created when needed; the folder's files
(without caches, virtual environments and Lightning's logs) go up in a single commit whose parent is the
commit read just before, so a commit made meanwhile (a ``volunteer host`` refreshing the peers file) is never
overwritten unseen. The peers file already on the Hub is kept unless ``--replace-peers``: ``volunteer host``
maintains it there. The command prints the commit sha and the exact command volunteers run.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from volunteer.authoring.check import CheckReport, check_project
from volunteer.authoring.hubwrite import hub_api, hub_errors
from volunteer.authoring.options import non_negative_int, repo_id
from volunteer.datadir import DataDir
from volunteer.errors import ConfigError
from volunteer.project.ids import parse_project_id
from volunteer.project.manifest import MANIFEST_NAME, read_manifest
from volunteer.project.static import SKIPPED_DIRS
from volunteer.settings import ArgumentParser, add_run_options, settings_from_namespace

DEFAULT_CHECK_STEPS = 2
SKIPPED_FILES = {".DS_Store"}
SKIPPED_SUFFIXES = (".pyc", ".pyo")
SKIPPED_FOLDERS = SKIPPED_DIRS | {"lightning_logs", ".ipynb_checkpoints", "checkpoints"}
KEPT_REMOTE = {".gitattributes"}
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


def project_files(folder: Path) -> list[str]:
    """The files ``publish`` uploads, relative to ``folder`` with ``/`` separators, sorted."""
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if any(part in SKIPPED_FOLDERS or part == ".git" for part in relative.parts[:-1]):
            continue
        if path.is_dir() or path.is_symlink() or not path.is_file():
            continue
        if relative.name in SKIPPED_FILES or relative.name.endswith(SKIPPED_SUFFIXES):
            continue
        files.append(relative.as_posix())
    return files


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

    local = project_files(folder)
    uploaded = list(local)
    peers_file = manifest.peers.file
    kept_peers = None
    if peers_file and peers_file in remote and not replace_peers and peers_file in uploaded:
        uploaded.remove(peers_file)
        kept_peers = peers_file
    stale = sorted(remote - set(local) - KEPT_REMOTE - ({kept_peers} if kept_peers else set()))
    deleted = stale if delete_missing else []
    operations = [CommitOperationAdd(path_in_repo=file, path_or_fileobj=str(folder / file)) for file in uploaded]
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
    )
    for line in report_lines(result):
        print(line)
    return 0
