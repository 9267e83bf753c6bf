"""Download a project from the Hugging Face Hub, pinned to one commit, with the cache as fallback.

A branch or tag is resolved to its commit sha once, and every file is fetched at that sha, so a commit pushed
during the download can never mix two versions. Resolutions are remembered in the cache's ``refs/`` folder
(the layout huggingface_hub itself uses), so that when the Hub cannot be reached the last snapshot starts.

Before consent only the manifest and the Python files are downloaded, after the repository's listing has been
checked against the rules and limits of :mod:`volunteer.project.files` (so a repository holding compiled or
native code, or too much, is refused before any of it is fetched); :func:`download_rest` fetches the other files
once the volunteer has agreed.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from volunteer.constants import env
from volunteer.datadir import atomic_write_text
from volunteer.errors import DataDirError, ProjectError
from volunteer.project.files import MAX_FILES, Contents, sort_files, walk_snapshot
from volunteer.project.ids import ProjectRef
from volunteer.project.manifest import MANIFEST_NAME
from volunteer.transfer import TransferMeter, watching

log = logging.getLogger(__name__)

RESOLVE_TIMEOUT = 10.0
"""Seconds to wait for the Hub to say which commit a revision is at."""


@dataclass(frozen=True)
class HubSnapshot:
    """A project's files on disk, at one commit."""

    root: Path
    sha: str
    from_cache: bool
    """True when the Hub could not be reached and a cached snapshot is used."""
    contents: Contents
    """The repository's files: the code (downloaded) and the data (not yet)."""
    warnings: tuple[str, ...] = ()


def hub_endpoint(setting: str | None) -> str | None:
    """The ``--endpoint`` setting, else ``HF_ENDPOINT``; ``None`` means huggingface_hub's default."""
    value = setting or env("HF_ENDPOINT")
    return value.rstrip("/") if value else None


def hub_url(setting: str | None) -> str:
    """The Hub's address as the volunteer is told it: :func:`hub_endpoint`, else huggingface_hub's default."""
    from huggingface_hub import constants

    return hub_endpoint(setting) or str(constants.ENDPOINT).rstrip("/")


def hub_token() -> str | None:
    """``HF_TOKEN``, for private projects (``None``: huggingface_hub's own login, if any)."""
    return env("HF_TOKEN")


def download_project(
    ref: ProjectRef, cache_dir: Path, *, endpoint: str | None = None, token: str | None = None
) -> HubSnapshot:
    """Download ``ref`` into ``cache_dir`` (a huggingface_hub cache) and return where its files are.

    Raises:
        ProjectError: repository or revision not found, authentication required or refused, the Hub unreachable
            with nothing cached, or a download that failed half-way.
    """
    from huggingface_hub import HfApi
    from huggingface_hub.errors import HfHubHTTPError, RevisionResolutionError

    shown_endpoint = hub_url(endpoint)
    api = HfApi(endpoint=endpoint, token=token)
    unreachable = unreachable_errors()
    warnings: list[str] = []
    from_cache = False

    if ref.pinned:
        sha = ref.revision
    else:
        sha, failure, why = "", None, ""
        try:
            sha = api.repo_info(ref.repo, revision=ref.revision, timeout=RESOLVE_TIMEOUT).sha or ""
        except unreachable as e:
            failure, why = e, _unreachable(e, shown_endpoint)
        except HfHubHTTPError as e:
            if _status(e) < 500:
                raise _hub_error(e, ref, shown_endpoint, token) from None
            failure, why = e, f"the Hub at {shown_endpoint} answered HTTP {_status(e)}"
        if failure is None:
            _remember_ref(cache_dir, ref, sha)
        else:
            sha = _cached_sha(api, ref, cache_dir, failure, shown_endpoint, RevisionResolutionError)
            from_cache = True
            warnings.append(f"{why}; starting {ref.repo}@{ref.revision} from the cached snapshot at commit {sha}")

    where = _describe(ref.repo, sha)
    saved = _saved_listing(cache_dir, ref.repo, sha)
    listing = saved
    if listing is None and not from_cache:
        try:
            listing = _listing(api, ref, sha, shown_endpoint, token)
        except _Unreachable as e:
            if not ref.pinned:
                raise _offline_error(ref, sha, shown_endpoint, cache_dir, e.error) from None
            from_cache = True  # a pinned commit may start from the cache, as snapshot_download would
            warnings.append(f"{_unreachable(e.error, shown_endpoint)}; starting {ref.repo}@{sha} from the cache")
        else:
            _save_listing(cache_dir, ref.repo, sha, listing)
    if listing is not None:
        contents = sort_files(listing, where, MANIFEST_NAME, count_all=True)
        wanted = [*contents.code, MANIFEST_NAME]
        root = _snapshot(ref, sha, cache_dir, endpoint, token, shown_endpoint, local_only=from_cache, only=wanted)
        sort_files(walk_snapshot(root, root.parent.parent, where), where, MANIFEST_NAME, count_all=True)
    else:  # cached by a client that kept no listing: what is on disk is checked instead
        root = _snapshot(
            ref, sha, cache_dir, endpoint, token, shown_endpoint, local_only=True, only=["*.py", MANIFEST_NAME]
        )
        contents = sort_files(walk_snapshot(root, root.parent.parent, where), where, MANIFEST_NAME, count_all=True)
    for warning in warnings:
        log.info(warning)  # the caller shows ResolvedProject.warnings; a bare warning here would print twice
    return HubSnapshot(root=root, sha=sha, from_cache=from_cache, contents=contents, warnings=tuple(warnings))


class _Unreachable(Exception):
    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _listing_path(cache_dir: Path, repo: str, sha: str) -> Path:
    from huggingface_hub.file_download import repo_folder_name

    return cache_dir / repo_folder_name(repo_id=repo, repo_type="model") / "volunteer-listings" / f"{sha}.json"


def _saved_listing(cache_dir: Path, repo: str, sha: str) -> list[tuple[str, int]] | None:
    """The listing read from the Hub when this commit was first downloaded (a commit never changes)."""
    import json

    try:
        data = json.loads(_listing_path(cache_dir, repo, sha).read_text(encoding="utf-8"))
        return [(str(path), int(size)) for path, size in data["files"]]
    except (OSError, ValueError, TypeError, KeyError, OverflowError):
        return None  # none kept, or damaged: the Hub (or the disk) is asked again


def _save_listing(cache_dir: Path, repo: str, sha: str, listing: list[tuple[str, int]]) -> None:
    import json

    try:
        atomic_write_text(_listing_path(cache_dir, repo, sha), json.dumps({"files": listing}))
    except OSError as e:  # the download reports an unwritable cache in full
        log.warning("could not keep the file listing of %s@%s: %s", repo, sha, e)


def download_rest(
    ref: ProjectRef,
    sha: str,
    cache_dir: Path,
    *,
    endpoint: str | None,
    token: str | None,
    from_cache: bool,
    meter: TransferMeter | None = None,
) -> Contents:
    """After consent: the rest of the project's files at ``sha``; checks the whole snapshot again.

    ``meter``, if given, counts the bytes as they land in the cache (its total is the caller's to set).

    Raises:
        ProjectError: the download fails, or the snapshot on disk holds what the rules refuse.
    """

    shown_endpoint = hub_url(endpoint)
    where = _describe(ref.repo, sha)
    if meter is None or from_cache:
        root = _snapshot(ref, sha, cache_dir, endpoint, token, shown_endpoint, local_only=from_cache, only=None)
    else:
        from huggingface_hub.file_download import repo_folder_name

        with watching(meter, cache_dir / repo_folder_name(repo_id=ref.repo, repo_type="model") / "blobs"):
            root = _snapshot(ref, sha, cache_dir, endpoint, token, shown_endpoint, local_only=False, only=None)
    return sort_files(walk_snapshot(root, root.parent.parent, where), where, MANIFEST_NAME, count_all=True)


def _describe(repo: str, sha: str) -> Any:
    return lambda file: f"{repo}@{sha[:7]}:{file}"


def _listing(api: Any, ref: ProjectRef, sha: str, shown_endpoint: str, token: str | None) -> list[tuple[str, int]]:
    """The repository's files at ``sha`` as (path, size); a listing longer than the limit is not read on.

    Raises:
        _Unreachable: the Hub cannot be reached.
        ProjectError: the Hub refuses, or the repository holds too many files.
    """
    from huggingface_hub.errors import HfHubHTTPError
    from huggingface_hub.hf_api import RepoFile

    files: list[tuple[str, int]] = []
    try:
        for entry in api.list_repo_tree(ref.repo, recursive=True, revision=sha):
            if isinstance(entry, RepoFile):
                files.append((entry.path, int(entry.size or 0)))
                if len(files) > MAX_FILES:
                    break  # sort_files refuses the repository; the rest of the listing is never read
    except unreachable_errors() as e:
        raise _Unreachable(e) from None
    except HfHubHTTPError as e:
        if _status(e) >= 500:
            raise _Unreachable(e) from None
        raise _hub_error(e, ref, shown_endpoint, token, sha=sha) from None
    return files


def _snapshot(
    ref: ProjectRef,
    sha: str,
    cache_dir: Path,
    endpoint: str | None,
    token: str | None,
    shown_endpoint: str,
    *,
    local_only: bool,
    only: list[str] | None,
) -> Path:
    """Download (or find in the cache) the snapshot at ``sha``: the files named in ``only``, or all."""
    import glob

    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    patterns = None
    if only is not None:  # exact names, escaped for fnmatch; the offline case passes patterns on purpose
        patterns = [name if local_only else glob.escape(name) for name in only]
    try:
        path = snapshot_download(
            ref.repo,
            revision=sha,
            cache_dir=cache_dir,
            endpoint=endpoint,
            token=token,
            local_files_only=local_only,
            allow_patterns=patterns,
            tqdm_class=_quiet_tqdm(),
        )
    except LocalEntryNotFoundError as e:
        raise _offline_error(ref, sha, shown_endpoint, cache_dir, e) from None
    except HfHubHTTPError as e:
        raise _hub_error(e, ref, shown_endpoint, token, sha=sha) from None
    except OSError as e:
        raise DataDirError(
            f"cannot write the project {ref.repo} into {cache_dir}: {e.strerror or e}",
            "free some disk space or fix the data directory's permissions (--data-dir / VOLUNTEER_HOME)",
        ) from None
    return Path(path)


def _cached_sha(api: Any, ref: ProjectRef, cache_dir: Path, error: Exception, shown_endpoint: str, missing: Any) -> str:
    """The commit the revision was at when last resolved, from the cache's ``refs/`` folder."""
    try:
        cached = api.resolve_revision(ref.repo, revision=ref.revision, cache_dir=cache_dir, local_files_only=True)
        return cached.resolved
    except missing:
        raise _offline_error(ref, ref.revision, shown_endpoint, cache_dir, error) from None


def _remember_ref(cache_dir: Path, ref: ProjectRef, sha: str) -> None:
    from huggingface_hub.file_download import repo_folder_name

    path = cache_dir / repo_folder_name(repo_id=ref.repo, repo_type="model") / "refs" / ref.revision
    try:
        if not path.is_file() or path.read_text().strip() != sha:
            atomic_write_text(path, sha)
    except OSError as e:  # the download below reports an unwritable cache in full
        log.warning("could not remember that %s@%s is at %s: %s", ref.repo, ref.revision, sha, e)


def _unreachable(error: BaseException, endpoint: str) -> str:
    from huggingface_hub.errors import OfflineModeIsEnabled

    if isinstance(error, OfflineModeIsEnabled) or isinstance(error.__cause__, OfflineModeIsEnabled):
        return "HF_HUB_OFFLINE is set"
    return f"the Hub at {endpoint} cannot be reached ({_reason(error)})"


def _offline_error(ref: ProjectRef, revision: str, endpoint: str, cache_dir: Path, error: Exception) -> ProjectError:
    at = f"@{revision}" if revision else ""
    if _unreachable(error, endpoint) == "HF_HUB_OFFLINE is set":
        return ProjectError(
            f"HF_HUB_OFFLINE is set, and no copy of {ref.repo}{at} is cached in {cache_dir}",
            "unset HF_HUB_OFFLINE (or set it to 0) so the project can be downloaded once; later runs start offline",
        )
    return ProjectError(
        f"cannot download {ref.repo}{at} from the Hub at {endpoint} ({_reason(error)}), and no copy of it is "
        f"cached in {cache_dir}",
        "check the network connection (and HF_ENDPOINT or --endpoint if you set one), then try again; once a project "
        "has been downloaded it also starts without network",
    )


def _hub_error(
    error: Exception, ref: ProjectRef, endpoint: str, token: str | None, *, sha: str | None = None
) -> ProjectError:
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    status = _status(error)
    if isinstance(error, GatedRepoError):
        return ProjectError(
            f"project repository {ref.repo} on {endpoint} is gated: its owners must approve you first",
            f"open {endpoint}/{ref.repo} with your account, request access, then set HF_TOKEN to a token of that "
            "account",
        )
    if isinstance(error, RevisionNotFoundError):
        revision = sha or ref.revision
        return ProjectError(
            f"revision {revision!r} was not found in project repository {ref.repo} on {endpoint}",
            f"use a branch, tag or commit sha that exists (e.g. {ref.repo}@main), or drop '@{ref.revision}' to "
            "follow the main branch",
        )
    if isinstance(error, RepositoryNotFoundError):
        if status == 401 and not token:
            return ProjectError(
                f"project repository {ref.repo} on {endpoint} needs authentication (it is private, or does not exist)",
                "if it is private, set HF_TOKEN to an access token that can read it (export HF_TOKEN=hf_...); "
                "otherwise check the spelling of org/name",
            )
        if token:
            return ProjectError(
                f"project repository {ref.repo} was not found on {endpoint}, or the HF_TOKEN given cannot read it",
                "check the spelling of org/name, and that the account of HF_TOKEN has been given access to it",
            )
        return ProjectError(
            f"project repository {ref.repo} was not found on {endpoint}",
            "check the spelling of org/name; a private repository also needs HF_TOKEN set to a token that can read it",
        )
    if status == 401:
        return ProjectError(
            f"the Hub at {endpoint} rejected the access token in HF_TOKEN (HTTP 401) for {ref.repo}",
            "create a new read token in your Hub account settings and set HF_TOKEN to it, or unset HF_TOKEN for a "
            "public project",
        )
    if status == 403:
        return ProjectError(
            f"the Hub at {endpoint} refused access to {ref.repo} (HTTP 403)",
            "make sure the account of HF_TOKEN may read this repository (a fine-grained token needs read access to it)",
        )
    return ProjectError(
        f"downloading {ref.repo} from {endpoint} failed: HTTP {status or '?'}",
        "try again later; if it persists, check HF_ENDPOINT / --endpoint and the project's page",
    )


def _status(error: Exception) -> int:
    response = getattr(error, "response", None)
    return int(getattr(response, "status_code", 0) or 0)


def _reason(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    first = text[0] if text else ""
    name = type(error).__name__
    return f"{name}: {first}"[:160] if first else name


def transport_errors() -> tuple[type[Exception], ...]:
    """The HTTP client's errors for a network that does not answer (httpx2 for huggingface_hub 2, else httpx)."""
    try:
        httpx = importlib.import_module("httpx2")
    except ImportError:  # huggingface_hub 1.x
        httpx = importlib.import_module("httpx")
    return (httpx.TransportError,)


def unreachable_errors() -> tuple[type[Exception], ...]:
    """Every error that means the Hub did not answer (offline mode included)."""
    from huggingface_hub.errors import OfflineModeIsEnabled

    return (*transport_errors(), OfflineModeIsEnabled, ConnectionError, TimeoutError)


def _quiet_tqdm() -> type:
    """A progress-bar class that draws nothing: a headless log or the TUI reports the download instead."""
    from tqdm.auto import tqdm

    class Quiet(tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return Quiet
