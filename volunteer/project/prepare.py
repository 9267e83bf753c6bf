"""``prepare_project``: from ``--project`` to a validated, consented project and its peer list.

Preparation reads files and talks to the Hub and the peers URL, but imports neither the project's code nor
torch, Lightning or hivemind: every mistake is reported at once, before training starts.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from pathlib import Path

import volunteer
from volunteer.datadir import DataDir
from volunteer.errors import ProjectError
from volunteer.project.files import Contents, sort_files, walk_folder
from volunteer.project.hub import download_project, download_rest, hub_endpoint, hub_token, hub_url
from volunteer.project.ids import ProjectRef, parse_project_id
from volunteer.project.manifest import MANIFEST_NAME, read_manifest
from volunteer.project.peersources import PeerList, collect_peers
from volunteer.project.prepared import PreparedProject, ResolvedProject, describe_file
from volunteer.project.requirements import check_client_version
from volunteer.project.static import check_project_code
from volunteer.project.trust import require_consent
from volunteer.settings import Settings
from volunteer.transfer import TransferMeter

log = logging.getLogger(__name__)

DEMO_ROOT = Path(volunteer.__file__).resolve().parent / "demo"


def resolve_project(settings: Settings, data_dir: DataDir) -> ResolvedProject:
    """Find, download and validate the project that ``settings.project`` names; no consent, no peers.

    Raises:
        ProjectError: for an id of no known form, a download that fails, or an invalid manifest or code reference.
        DataDirError: when the Hub cache cannot be written.
    """
    ref = parse_project_id(settings.project)
    revision, endpoint, from_cache = "", "", False
    warnings: tuple[str, ...] = ()
    if ref.kind == "hub":
        endpoint_setting = hub_endpoint(settings.endpoint)
        snapshot = download_project(ref, data_dir.hub_cache, endpoint=endpoint_setting, token=hub_token())
        root, revision, from_cache, warnings = snapshot.root, snapshot.sha, snapshot.from_cache, snapshot.warnings
        endpoint = hub_url(settings.endpoint)
        contents = snapshot.contents
    else:
        root = DEMO_ROOT if ref.kind == "builtin" else Path(ref.repo)
        contents = local_contents(root, _where(ref, root, revision))

    where = _where(ref, root, revision)
    manifest = read_manifest(root / MANIFEST_NAME, where(MANIFEST_NAME))
    check_client_version(manifest.requirements, where(MANIFEST_NAME))
    check_project_code(manifest, root, where, files=contents.code, present=_present(ref, root, contents))
    return ResolvedProject(
        id=ref.text,
        repo=ref.repo,
        revision=revision,
        root=root,
        manifest=manifest,
        files=contents.code,
        from_cache=from_cache,
        warnings=tuple(warnings),
        kind=ref.kind,
        endpoint=endpoint,
        data_files=contents.data_files,
        data_bytes=contents.data_bytes,
        complete=ref.kind != "hub",
    )


def local_contents(root: Path, where: Callable[[str], str]) -> Contents:
    """The files of a project folder on this machine, checked against the same rules as a Hub project's.

    Raises:
        ProjectError: the folder holds a native extension or a ``.pth`` file, or exceeds a limit.
    """
    if not root.is_dir():
        raise ProjectError(
            f"project folder {str(root)!r} does not exist" if not root.exists() else f"{str(root)!r} is not a folder",
            "give the path of a folder holding volunteer.toml, or a Hub id (org/name)",
        )
    return sort_files(walk_folder(root), where, MANIFEST_NAME, count_all=False)


def _present(ref: ProjectRef, root: Path, contents: Contents) -> Callable[[str], bool]:
    """Whether a file is part of the project (a Hub project's data files are not downloaded before consent)."""
    if ref.kind != "hub":
        return lambda file: (root / file).is_file()
    listed = set(contents.code) | set(contents.data)
    return lambda file: file in listed


def finish_download(
    project: ResolvedProject, settings: Settings, data_dir: DataDir, meter: TransferMeter | None = None
) -> ResolvedProject:
    """After consent: download the rest of a Hub project (its data files); other projects are already whole.

    ``meter``, if given, shows the download's progress (its total: the data files' size in the listing).

    Raises:
        ProjectError: the download fails, or the snapshot holds what the rules refuse.
    """
    if project.complete:
        return project
    ref = parse_project_id(project.id)
    if meter is not None:
        meter.start("project files", project.data_bytes or None)
    try:
        contents = download_rest(
            ref,
            project.revision,
            data_dir.hub_cache,
            endpoint=hub_endpoint(settings.endpoint),
            token=hub_token(),
            from_cache=project.from_cache,
            meter=meter,
        )
    finally:
        if meter is not None:
            meter.finish()
    if contents.code != project.files:
        changed = sorted(set(contents.code) ^ set(project.files))
        raise ProjectError(
            f"{project.where('')}: the snapshot's Python files changed after consent: {', '.join(changed)}",
            f"the cache in {data_dir.hub_cache} is being changed by someone else: delete the project's folder there "
            "and run again",
        )
    return dataclasses.replace(project, complete=True, data_files=contents.data_files, data_bytes=contents.data_bytes)


def prepare_project(
    settings: Settings,
    data_dir: DataDir,
    *,
    ask_consent: Callable[[ResolvedProject], bool] | None = None,
    meter: TransferMeter | None = None,
) -> PreparedProject:
    """Resolve the project, make sure its code may run here, and collect its peers.

    Args:
        settings: The run's settings (``project``, ``trust``, ``initial_peers``, ``endpoint`` are used).
        data_dir: Where the Hub cache, consent records and peer cache live.
        ask_consent: Asks the volunteer (the TUI's dialog) when this commit has no remembered consent and
            ``settings.trust`` is off; ``None`` (headless) means: do not ask, fail with a hint.
        meter: Counts the bytes of the download after consent, for a progress bar.

    Raises:
        ProjectError: see :func:`resolve_project`; also for an invalid line in the project's peers file.
        TrustError: when the project's code is not trusted.
        PeerAddressError: for an invalid ``--initial-peers`` address.
        DataDirError: when the data directory cannot be read or written.
    """
    project = resolve_project(settings, data_dir)
    consent = require_consent(project, data_dir, trust=settings.trust, ask=ask_consent)
    project = finish_download(project, settings, data_dir, meter)
    peers = collect_project_peers(project, settings, data_dir)
    return PreparedProject(project=project, peers=peers, consent=consent)


def collect_project_peers(project: ResolvedProject, settings: Settings, data_dir: DataDir) -> PeerList:
    """Merge the peer sources of a resolved project; the session calls it again on every reconnect."""
    manifest = project.manifest
    return collect_peers(
        initial_peers=settings.initial_peers,
        run_id=manifest.run_id,
        data_dir=data_dir,
        root=project.root,
        peers_file=manifest.peers.file,
        peers_url=manifest.peers.url,
        url_timeout=manifest.peers.url_timeout,
        shown_file=project.where(manifest.peers.file) if manifest.peers.file else None,
    )


def _where(ref: ProjectRef, root: Path, revision: str) -> Callable[[str], str]:
    return lambda file: describe_file(ref.kind, ref.repo, revision, root, file)
