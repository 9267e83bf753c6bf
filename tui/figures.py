"""What every figure on the main screen means: the help screen and docs/tui.md both render this."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Figure:
    """One figure on screen and what it means."""

    name: str
    meaning: str


@dataclass(frozen=True)
class Section:
    """A panel of the main screen and the figures in it."""

    title: str
    figures: tuple[Figure, ...]


SECTIONS: tuple[Section, ...] = (
    Section(
        "Header",
        (
            Figure("Project", "The project's name, as declared by the project."),
            Figure(
                "repo@sha",
                "Where the project's code comes from and the exact commit that runs "
                "(no sha for local and built-in projects).",
            ),
            Figure("run", "The run id: peers with the same run id train one model together."),
            Figure("peer", "This peer's nickname and shortened peer id, as the leaderboard shows it."),
            Figure(
                "State",
                "training (green): computing and contributing; syncing, connecting, downloading (blue): "
                "getting the swarm's latest model state, joining the swarm, fetching the project; "
                "reconnecting (yellow): lost contact with the swarm (could not join it, or cut off from "
                "every known peer while training) and trying again; waiting for "
                "consent (yellow): the project's code runs only once you trust it; starting, paused, "
                "stopping, stopped (grey); failed (red): the session stopped on an error; disconnected "
                "(purple): this screen cannot reach the session, so the figures are the last ones it saw.",
            ),
        ),
    ),
    Section(
        "You",
        (
            Figure("Samples", "Samples this machine computed in this session, and all time."),
            Figure(
                "in global steps",
                "All-time samples that went into a global step the swarm took: your credit on the leaderboard. "
                "It reads 'in averaged steps' for a project in local mode (samples whose parameter change was "
                "averaged with another peer's) and 'in outer steps' in diloco mode (samples whose inner steps' "
                "change was averaged with another peer's in an outer step).",
            ),
            Figure(
                "local only",
                "All-time samples computed while alone or out of sync with the swarm; they did not "
                "reach a global step, so they are not credited.",
            ),
            Figure(
                "pending",
                "All-time samples in neither count yet: gathered toward the global step the swarm is working on now.",
            ),
            Figure("Steps", "Local optimizer steps (batches) in this session, and all time."),
            Figure("Speed", "Samples per second this machine computes, as the session last measured it."),
            Figure("Uptime", "How long this session has been running."),
            Figure(
                "Device",
                "What this peer trains on: the GPU name with memory used/total and utilisation, or CPU.",
            ),
            Figure(
                "Mode",
                "full peer (others can dial this machine) or client mode (it only dials out: behind NAT or a "
                "firewall, or --client-mode), and why; peers were asked to dial it back when it joined.",
            ),
            Figure(
                "Network",
                "Bytes on the wire: upload and download rates over the last 10 s and bytes sent per sample computed; "
                "in yellow, what the upload cap (--max-upload, --monthly-data) is doing.",
            ),
        ),
    ),
    Section(
        "Swarm",
        (
            Figure(
                "Epoch",
                "The swarm's global epoch: how many global steps the swarm has taken. Your local epoch "
                "is shown when it lags behind.",
            ),
            Figure("Peers", "Peers training in the swarm right now, as the swarm reports it."),
            Figure(
                "Next step",
                "Samples the swarm accumulated toward target_batch_size; when the bar is full, the peers "
                "average their gradients and take a global step.",
            ),
            Figure("ETA", "The swarm's estimate of the time until the next global step."),
            Figure("Swarm speed", "Samples per second the whole swarm computes."),
            Figure("Your share", "Your samples/s as a part of the swarm's samples/s."),
        ),
    ),
    Section(
        "History",
        (
            Figure(
                "Loss",
                "Training loss since this screen opened (smoothed when the session smooths it), with "
                "its minimum and maximum; lower is better.",
            ),
            Figure("Samples/s", "This machine's speed since this screen opened, with its maximum."),
        ),
    ),
    Section(
        "Leaderboard",
        (
            Figure("#", "Rank by samples contributed; this peer is highlighted and marked with ▶."),
            Figure("Peer", "Each peer's nickname."),
            Figure("Samples", "Samples the peer contributed to the swarm's global steps, all time."),
            Figure("Speed", "The peer's latest reported samples/s."),
            Figure("Seen", "How long before this snapshot the peer last published its record."),
            Figure(
                "records dropped",
                "Peer records left off the board: forged, claiming another peer's id, with impossible "
                "figures or a time far from ours, or beyond the 100 entries shown.",
            ),
        ),
    ),
    Section(
        "Log",
        (
            Figure(
                "Events",
                "What happened and when: joined, state loaded, reconnecting, recovered, errors (red).",
            ),
        ),
    ),
)
"""Every figure, panel by panel."""

KEYS: tuple[Figure, ...] = (
    Figure("p", "Pause, or resume when paused. Pausing stops computing; nothing already credited is lost."),
    Figure("f", "Finish: leave after the current global step, so no contributed sample is wasted, then quit."),
    Figure("q", "Quit. Asks first while training; when attached, you can detach and leave it training."),
    Figure("l", "Show or hide the event log."),
    Figure("?", "This help."),
)
"""Every key, also shown in the footer; the footer entries can be clicked."""


def help_markdown() -> str:
    """The figure guide as Markdown (the help screen's body and the heart of docs/tui.md)."""
    lines: list[str] = []
    for section in SECTIONS:
        lines += [f"### {section.title}", ""]
        lines += [f"- **{figure.name}**: {figure.meaning}" for figure in section.figures]
        lines.append("")
    lines += ["### Keys", ""]
    lines += [f"- **`{key.name}`**: {key.meaning}" for key in KEYS]
    return "\n".join(lines) + "\n"
