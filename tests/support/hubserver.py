"""A minimal Hugging Face Hub on 127.0.0.1, for the real ``huggingface_hub`` client (2.x) to talk to.

It serves model repositories held in memory, with several commits, branches and tags, and private
repositories that need a bearer token. It implements what ``snapshot_download`` and ``HfApi.repo_info`` call:

- ``GET /api/models/{repo}`` and ``GET /api/models/{repo}/revision/{rev}``: ``{"id", "sha", "private", "siblings"}``
- ``GET /api/models/{repo}/tree/{rev}[/{path}]?recursive=...``: a list of ``{"type", "oid", "size", "path"}``
- ``HEAD`` and ``GET /{repo}/resolve/{rev}/{path}``: the file, with ``X-Repo-Commit``, ``ETag`` and
  ``Content-Length``

It also takes writes, as ``HfApi.create_repo``, ``upload_folder`` and ``upload_file`` make them, so an upload
creates a real commit that the read endpoints then serve:

- ``POST /api/repos/create``: a model repository with a first commit holding ``.gitattributes``, as the Hub does
- ``POST /api/models/{repo}/preupload/{rev}``: every file is uploaded "regular" (inline in the commit); the
  ``oid`` of a file already there lets the client skip unchanged files
- ``POST /api/models/{repo}/commit/{rev}``: the NDJSON commit (``header``, ``file``, ``deletedFile``,
  ``deletedFolder``), checked against ``parentCommit``; answers ``commitOid`` and ``commitUrl``
- ``POST /api/validate-yaml`` (the client checks a README's metadata) and ``GET /api/whoami-v2``

Writing needs a token in :attr:`HubServer.writers`, which names the namespaces (users, organizations) it may
write to: no token is a 401, a token that may not write there a 403, as on the Hub.

Reads answer errors as the Hub does, with the ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``,
``EntryNotFound``) or ``X-Error-Message`` headers that ``huggingface_hub`` turns into its typed exceptions:
a private repository without a token is a 401 ``RepoNotFound``; an unknown token is a 401 "Invalid
credentials in Authorization header"; a known token without access, and a repository that does not exist,
are a 404 ``RepoNotFound`` (the public Hub answers 401 for those when no token is sent).
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

REQUEST_TIMEOUT = 10.0


def git_blob_id(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class HubRepo:
    """One model repository: commits (full file trees), branches and tags."""

    repo_id: str
    private: bool = False
    readers: set[str] = field(default_factory=set)
    """Tokens that may read a private repository."""
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    refs: dict[str, str] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    """Each commit's message, by sha."""
    history: list[str] = field(default_factory=list)
    """Every commit's sha, oldest first."""

    def commit(self, files: dict[str, str | bytes | None], branch: str = "main", message: str = "") -> str:
        """Add a commit on ``branch``: the branch's files updated with ``files`` (``None`` deletes one)."""
        tree = dict(self.commits.get(self.refs.get(branch, ""), {}))
        for path, content in files.items():
            if content is None:
                tree.pop(path, None)
            else:
                tree[path] = content.encode() if isinstance(content, str) else content
        digest = hashlib.sha1(f"{self.repo_id}\0{branch}\0{len(self.commits)}\0{message}".encode())
        for path in sorted(tree):
            digest.update(path.encode() + b"\0" + git_blob_id(tree[path]).encode())
        sha = digest.hexdigest()
        self.commits[sha] = tree
        self.refs[branch] = sha
        self.messages[sha] = message
        self.history.append(sha)
        return sha

    def files(self, revision: str = "main") -> dict[str, bytes]:
        """The files at a revision (empty when it does not exist)."""
        sha = self.resolve(revision)
        return dict(self.commits[sha]) if sha else {}

    def tag(self, name: str, sha: str) -> None:
        self.refs[name] = sha

    def resolve(self, revision: str) -> str | None:
        if revision in self.refs:
            return self.refs[revision]
        return revision if revision in self.commits else None


class HubServer:
    """The server; use as a context manager, or call :meth:`start` and :meth:`stop`."""

    def __init__(self) -> None:
        self.repos: dict[str, HubRepo] = {}
        self.tokens: set[str] = set()
        """Tokens the server knows (others are 'invalid credentials')."""
        self.writers: dict[str, set[str]] = {}
        """Tokens that may write, and the namespaces (user or organization names) each may write to."""
        self.requests: list[tuple[str, str, str | None]] = []
        """(method, path, Authorization header) of every request, for assertions."""
        self.fail_with: int | None = None
        """When set, every request is answered with this HTTP status (e.g. 503: the Hub is down)."""
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def add_repo(self, repo_id: str, *, private: bool = False, readers: tuple[str, ...] = ()) -> HubRepo:
        repo = HubRepo(repo_id, private=private, readers=set(readers))
        self.tokens.update(readers)
        self.repos[repo_id] = repo
        return repo

    def add_writer(self, token: str, *namespaces: str) -> None:
        """Let ``token`` create repositories in, and commit to, ``namespaces`` (and read what it created)."""
        self.tokens.add(token)
        self.writers.setdefault(token, set()).update(namespaces)

    @property
    def url(self) -> str:
        assert self._server is not None, "server not started"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubServer:
        hub = self

        class Handler(_Handler):
            server_hub = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def record(self, method: str, path: str, auth: str | None) -> None:
        with self._lock:
            self.requests.append((method, path, auth))


class _Handler(BaseHTTPRequestHandler):
    server_hub: HubServer
    timeout = REQUEST_TIMEOUT

    def log_message(self, format: str, *args: object) -> None:  # keep test output clean
        pass

    def do_GET(self) -> None:
        self._route(head=False)

    def do_HEAD(self) -> None:
        self._route(head=True)

    def do_POST(self) -> None:
        hub = self.server_hub
        auth = self.headers.get("Authorization")
        split = urlsplit(self.path)
        hub.record("POST", split.path, auth)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if hub.fail_with is not None:
            self._error(hub.fail_with, message="Service unavailable")
            return
        parts = split.path.strip("/").split("/")
        if parts == ["api", "validate-yaml"]:
            self._json({"errors": [], "warnings": []})
        elif parts == ["api", "repos", "create"]:
            self._create_repo(body, auth)
        elif len(parts) >= 6 and parts[:2] == ["api", "models"] and parts[4] in ("preupload", "commit"):
            if "create_pr=1" in split.query:
                self._error(400, message="pull requests are not supported by this test server")
                return
            repo = self._writable(f"{parts[2]}/{parts[3]}", auth)
            if repo is None:
                return
            revision = unquote("/".join(parts[5:]))
            if parts[4] == "preupload":
                self._preupload(repo, revision, body)
            else:
                self._commit(repo, revision, body)
        else:
            self._error(404, message="Not found")

    # routing

    def _route(self, *, head: bool) -> None:
        hub = self.server_hub
        auth = self.headers.get("Authorization")
        raw_path = urlsplit(self.path).path
        hub.record(self.command, raw_path, auth)
        if hub.fail_with is not None:
            self._error(hub.fail_with, message="Service unavailable")
            return
        parts = raw_path.strip("/").split("/")
        if parts == ["api", "whoami-v2"]:
            self._whoami(auth)
        elif len(parts) >= 3 and parts[:2] == ["api", "models"]:
            self._api(parts[2:], auth)
        elif len(parts) >= 5 and parts[2] == "resolve":
            repo = self._repo(f"{parts[0]}/{parts[1]}", auth)
            if repo is not None:
                self._file(repo, unquote(parts[3]), unquote("/".join(parts[4:])), head=head)
        else:
            self._error(404, message="Not found")

    def _api(self, parts: list[str], auth: str | None) -> None:
        if len(parts) < 2:
            self._error(404, message="Not found")
            return
        repo = self._repo(f"{parts[0]}/{parts[1]}", auth)
        if repo is None:
            return
        rest = parts[2:]
        if not rest:
            self._info(repo, "main")
        elif rest[0] == "revision" and len(rest) == 2:
            self._info(repo, unquote(rest[1]))
        elif rest[0] == "tree" and len(rest) >= 2:
            self._tree(repo, unquote(rest[1]), unquote("/".join(rest[2:])))
        else:
            self._error(404, message="Not found")

    def _repo(self, repo_id: str, auth: str | None) -> HubRepo | None:
        hub = self.server_hub
        repo = hub.repos.get(repo_id)
        token = auth[len("Bearer ") :] if auth and auth.startswith("Bearer ") else None
        if token is not None and token not in hub.tokens:
            self._error(401, message="Invalid credentials in Authorization header")
            return None
        if repo is None:
            self._error(404, code="RepoNotFound", message="Repository not found")
            return None
        if repo.private and token is None:
            self._error(401, code="RepoNotFound", message="Repository not found")
            return None
        if repo.private and token not in repo.readers:
            self._error(404, code="RepoNotFound", message="Repository not found")
            return None
        return repo

    def _writer(self, auth: str | None) -> tuple[str, set[str]] | None:
        """The token and the namespaces it may write to; answers 401 and returns None when it may not write."""
        hub = self.server_hub
        token = auth[len("Bearer ") :] if auth and auth.startswith("Bearer ") else None
        if token is None:
            self._error(401, message="You must be authenticated to write (invalid or missing token)")
            return None
        if token not in hub.tokens:
            self._error(401, message="Invalid credentials in Authorization header")
            return None
        return token, hub.writers.get(token, set())

    def _writable(self, repo_id: str, auth: str | None) -> HubRepo | None:
        writer = self._writer(auth)
        if writer is None:
            return None
        token, namespaces = writer
        repo = self.server_hub.repos.get(repo_id)
        if repo is None or (repo.private and token not in repo.readers and repo_id.split("/")[0] not in namespaces):
            self._error(404, code="RepoNotFound", message="Repository not found")
            return None
        if repo_id.split("/")[0] not in namespaces:
            self._error(403, message=f"You don't have the rights to write to {repo_id}")
            return None
        return repo

    # endpoints

    def _whoami(self, auth: str | None) -> None:
        writer = self._writer(auth)
        if writer is not None:
            _, namespaces = writer
            names = sorted(namespaces) or ["reader"]
            orgs = [{"name": name, "type": "org"} for name in names[1:]]
            self._json({"type": "user", "name": names[0], "orgs": orgs, "auth": {"type": "access_token"}})

    def _create_repo(self, body: bytes, auth: str | None) -> None:
        hub = self.server_hub
        writer = self._writer(auth)
        if writer is None:
            return
        token, namespaces = writer
        try:
            request = json.loads(body)
            namespace, name = request["organization"], request["name"]
        except (ValueError, KeyError, TypeError):
            self._error(400, message="invalid repository creation request")
            return
        if request.get("type", "model") != "model":
            self._error(400, message="this test server only has model repositories")
            return
        if namespace is None or namespace not in namespaces:
            self._error(403, message=f"You don't have the rights to create a model under the namespace {namespace}")
            return
        repo_id = f"{namespace}/{name}"
        with hub._lock:
            if repo_id in hub.repos:
                self._error(409, message="You already created this model repo", url=f"{hub.url}/{repo_id}")
                return
            repo = hub.add_repo(repo_id, private=request.get("visibility") == "private", readers=(token,))
            repo.commit({".gitattributes": "*.pt filter=lfs diff=lfs merge=lfs -text\n"}, message="initial commit")
        self._json({"url": f"{hub.url}/{repo_id}", "name": repo_id, "id": repo_id})

    def _preupload(self, repo: HubRepo, revision: str, body: bytes) -> None:
        try:
            files = json.loads(body)["files"]
        except (ValueError, KeyError, TypeError):
            self._error(400, message="invalid preupload request")
            return
        current = repo.files(revision)
        answer = []
        for item in files:
            existing = current.get(item["path"])
            answer.append(
                {
                    "path": item["path"],
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_id(existing) if existing is not None else None,
                }
            )
        self._json({"files": answer})

    def _commit(self, repo: HubRepo, revision: str, body: bytes) -> None:
        hub = self.server_hub
        try:
            lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        except ValueError:
            self._error(400, message="the commit payload is not NDJSON")
            return
        header = next((line["value"] for line in lines if line.get("key") == "header"), None)
        if header is None or not header.get("summary"):
            self._error(400, message="the commit has no header with a summary")
            return
        changes: dict[str, str | bytes | None] = {}
        deleted_folders: list[str] = []
        for line in lines:
            key, value = line.get("key"), line.get("value") or {}
            if key == "file":
                if value.get("encoding") != "base64":
                    self._error(400, message="files must be base64-encoded")
                    return
                changes[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                changes[value["path"]] = None
            elif key == "deletedFolder":
                deleted_folders.append(value["path"].rstrip("/") + "/")
            elif key == "lfsFile":
                self._error(400, message="LFS uploads are not supported by this test server")
                return
        with hub._lock:
            head = repo.refs.get(revision)
            if head is None:
                self._error(404, code="RevisionNotFound", message=f"Invalid rev id: {revision}")
                return
            parent = header.get("parentCommit")
            if parent and not head.startswith(parent):
                self._error(412, message=f"A commit has happened since. Please refresh and try again. ({head})")
                return
            for path in repo.commits[head]:
                if any(path.startswith(folder) for folder in deleted_folders):
                    changes.setdefault(path, None)
            sha = repo.commit(changes, branch=revision, message=header["summary"])
        self._json({"commitOid": sha, "commitUrl": f"{hub.url}/{repo.repo_id}/commit/{sha}", "pullRequestUrl": None})

    def _info(self, repo: HubRepo, revision: str) -> None:
        sha = repo.resolve(revision)
        if sha is None:
            self._error(404, code="RevisionNotFound", message=f"Invalid rev id: {revision}")
            return
        body = {
            "id": repo.repo_id,
            "modelId": repo.repo_id,
            "sha": sha,
            "private": repo.private,
            "siblings": [{"rfilename": path} for path in sorted(repo.commits[sha])],
        }
        self._json(body)

    def _tree(self, repo: HubRepo, revision: str, prefix: str) -> None:
        sha = repo.resolve(revision)
        if sha is None:
            self._error(404, code="RevisionNotFound", message=f"Invalid rev id: {revision}")
            return
        files = repo.commits[sha]
        entries: list[dict[str, object]] = []
        folders: set[str] = set()
        for path in sorted(files):
            if prefix and not path.startswith(prefix + "/"):
                continue
            parents = path.split("/")[:-1]
            for i in range(1, len(parents) + 1):
                folders.add("/".join(parents[:i]))
            entries.append({"type": "file", "oid": git_blob_id(files[path]), "size": len(files[path]), "path": path})
        for folder in sorted(folders):
            entries.append({"type": "directory", "oid": hashlib.sha1(folder.encode()).hexdigest(), "path": folder})
        self._json(entries)

    def _file(self, repo: HubRepo, revision: str, path: str, *, head: bool) -> None:
        sha = repo.resolve(revision)
        if sha is None:
            self._error(404, code="RevisionNotFound", message=f"Invalid rev id: {revision}")
            return
        content = repo.commits[sha].get(path)
        if content is None:
            self._error(404, code="EntryNotFound", message="Entry not found", commit=sha)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(content)))
        self.send_header("ETag", f'"{git_blob_id(content)}"')
        self.send_header("X-Repo-Commit", sha)
        self.end_headers()
        if not head:
            self.wfile.write(content)

    # responses

    def _json(self, body: object) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _error(
        self,
        status: int,
        *,
        code: str | None = None,
        message: str = "",
        commit: str | None = None,
        url: str | None = None,
    ) -> None:
        body: dict[str, str] = {"error": message}
        if url:
            body["url"] = url
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if code:
            self.send_header("X-Error-Code", code)
        if message:
            self.send_header("X-Error-Message", message)
        if commit:
            self.send_header("X-Repo-Commit", commit)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
