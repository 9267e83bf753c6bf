"""Projects: find one (demo, a folder, or a Hub repository), download it, validate it, ask consent, import it.

The runner calls :func:`prepare_project` (fast: it imports no torch, Lightning, hivemind or project code),
then the training process calls :func:`~volunteer.project.loader.build_project` to import the project's code in
isolation, and the session :func:`remember_working_peers` once it has joined the swarm. The format of a project
is in docs/projects.md.
"""

from volunteer.project.ids import ProjectRef, parse_project_id
from volunteer.project.manifest import MANIFEST_NAME, Manifest, parse_manifest, read_manifest
from volunteer.project.peersources import PeerList, collect_peers, remember_working_peers
from volunteer.project.prepare import collect_project_peers, prepare_project, resolve_project
from volunteer.project.prepared import BuiltProject, PreparedProject, ResolvedProject

__all__ = [
    "MANIFEST_NAME",
    "BuiltProject",
    "Manifest",
    "PeerList",
    "PreparedProject",
    "ProjectRef",
    "ResolvedProject",
    "collect_peers",
    "collect_project_peers",
    "parse_manifest",
    "parse_project_id",
    "prepare_project",
    "read_manifest",
    "remember_working_peers",
    "resolve_project",
]
