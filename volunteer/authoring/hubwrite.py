"""Writing to the Hub (``publish``, and ``host``'s peers file and checkpoints), with one-line errors.

Every call goes through :func:`hub_errors`, which turns what ``huggingface_hub`` raises into a
:class:`~volunteer.authoring.errors.HubWriteError` naming the repository, the Hub and the fix.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from volunteer.authoring.errors import HubWriteError
from volunteer.project.hub import hub_endpoint, hub_token, hub_url

TOKENS_URL = "https://huggingface.co/settings/tokens"
WRITE_TIMEOUT = 30.0


def hub_api(endpoint_setting: str | None) -> tuple[Any, str]:
    """An ``HfApi`` for ``--endpoint``/``HF_ENDPOINT`` and ``HF_TOKEN`` (else the saved login), and the Hub's URL."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=hub_endpoint(endpoint_setting), token=hub_token()), hub_url(endpoint_setting)


def has_token(api: Any) -> bool:
    """Whether a request would carry a token (``HF_TOKEN``, or one saved by ``hf auth login``)."""
    from huggingface_hub import get_token

    return bool(api.token or get_token())


@contextlib.contextmanager
def hub_errors(api: Any, endpoint: str, repo: str, doing: str) -> Iterator[None]:
    """Run Hub calls; raise :class:`HubWriteError` (``doing`` names the action: "create the repository")."""
    from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled

    from volunteer.project.hub import unreachable_errors

    try:
        yield
    except OfflineModeIsEnabled:
        raise HubWriteError(
            f"cannot {doing} {repo}: HF_HUB_OFFLINE is set", "unset HF_HUB_OFFLINE to reach the Hub"
        ) from None
    except unreachable_errors() as e:
        raise HubWriteError(
            f"cannot reach the Hub at {endpoint} to {doing} {repo} ({type(e).__name__}: {_first_line(e)})",
            "check the network connection, and HF_ENDPOINT / --endpoint",
        ) from None
    except HfHubHTTPError as e:
        raise http_error(e, api, endpoint, repo, doing) from None
    except ValueError as e:  # the client's own checks, e.g. a README whose metadata block is invalid
        readme = "README" in str(e)
        raise HubWriteError(
            f"cannot {doing} {repo}: {_first_line(e)}",
            "fix README.md's metadata block (between the --- lines): it must be valid YAML"
            if readme
            else "fix what it names, then run the command again",
        ) from None


def http_error(error: Exception, api: Any, endpoint: str, repo: str, doing: str) -> HubWriteError:
    response = getattr(error, "response", None)
    status = int(getattr(response, "status_code", 0) or 0)
    namespace = repo.split("/")[0]
    if status == 401:
        if not has_token(api):
            return HubWriteError(
                f"cannot {doing} {repo}: not logged in to the Hub at {endpoint} (HTTP 401)",
                f"set HF_TOKEN to an access token with write access ({TOKENS_URL}), or run 'hf auth login'",
                status=status,
            )
        return HubWriteError(
            f"the Hub at {endpoint} rejected the access token (HTTP 401) when trying to {doing} {repo}",
            f"HF_TOKEN (or the saved login) is wrong or expired: create a token with write access at {TOKENS_URL}",
            status=status,
        )
    if status == 403:
        return HubWriteError(
            f"the access token may not {doing} {repo} (HTTP 403)",
            f"use a token with write access to {namespace} (a fine-grained token needs 'write' there), or publish "
            f"under your own name: --repo <your user name>/{repo.split('/')[-1]}",
            status=status,
        )
    if status == 404:
        return HubWriteError(
            f"repository {repo} was not found on {endpoint} (HTTP 404) when trying to {doing} it",
            "check its name; if it is private, the access token must be allowed to read and write it",
            status=status,
        )
    if status == 412:
        return HubWriteError(
            f"{repo} changed while trying to {doing} it (HTTP 412)", "run the command again", status=status
        )
    if status >= 500 or status == 0:
        return HubWriteError(
            f"the Hub at {endpoint} answered HTTP {status or '?'} when trying to {doing} {repo}",
            "try again in a moment; if it persists, check the Hub's status page",
            status=status,
        )
    return HubWriteError(
        f"the Hub at {endpoint} refused to {doing} {repo} (HTTP {status}): {_first_line(error)}",
        "fix what the message names, then run the command again",
        status=status,
    )


def _first_line(error: Exception) -> str:
    for line in str(error).strip().splitlines():
        if line.strip():
            return line.strip()[:200]
    return type(error).__name__
