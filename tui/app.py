"""The volunteer TUI: one main screen fed by a polling worker, with dialogs for consent, quit and failure."""

from __future__ import annotations

import threading
import time
from collections import deque

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Grid
from textual.reactive import reactive
from textual.widgets import Footer
from textual.worker import Worker, WorkerState, get_current_worker

from tui import format as fmt
from tui.messages import (
    CommandFailed,
    EventsArrived,
    SessionRestarted,
    SnapshotUpdated,
    SourceDisconnected,
    SourceReconnected,
)
from tui.screens import FailureScreen, HelpScreen, QuitChoice, QuitScreen, TrustScreen
from tui.widgets import Banner, EventLog, HistoryPanel, Leaderboard, StatusHeader, SwarmPanel, YouPanel
from volunteer.stats import Command, ErrorInfo, Event, Snapshot, SnapshotSource, State

POLL_INTERVAL = 0.25
"""Seconds between polls: at most four refreshes a second."""

MAX_RETRY_DELAY = 5.0
"""The longest wait between tries while the source is unreachable."""

LOG_MIN_HEIGHT = 34
"""Terminals at least this tall open with the log pane shown; smaller ones keep the room for figures."""

RECENT_EVENTS = 100
"""Events kept for the failure screen."""

RESTART_TOLERANCE = 1.0
"""Seconds uptime may seem to go back (clock jitter) before the session counts as restarted."""
"""Events kept for the failure screen."""

ACTIVE_STATES = frozenset({State.CONNECTING, State.LOADING_STATE, State.TRAINING, State.RECONNECTING})
"""States in which the session computes or is about to: pausing makes sense, quitting asks first."""

ENDED_STATES = frozenset({State.STOPPED, State.FAILED})
"""States in which there is nothing left to stop."""

APP_ACTIONS = frozenset({"pause", "resume", "finish", "toggle_log", "help", "request_quit"})
"""Actions of the main screen, disabled while a dialog or the failure screen is up."""


def retry_delay(attempt: int, poll_interval: float) -> float:
    """Bounded exponential backoff: twice the poll interval, doubling per failed try, at most 5 s."""
    return min(MAX_RETRY_DELAY, poll_interval * 2.0 ** min(attempt, 16))


class VolunteerApp(App[None]):
    """Shows a session's snapshots and sends it commands; never blocks on the source in the UI thread.

    Args:
        source: Where snapshots and events come from and commands go.
        poll_interval: Seconds between polls of the source; the default keeps to 4 refreshes a second.
        attach: True when the session runs headless elsewhere: quitting can leave it training.

    Raises:
        ValueError: ``poll_interval`` is not positive.
    """

    CSS_PATH = "volunteer.tcss"
    TITLE = "volunteer"
    ENABLE_COMMAND_PALETTE = False
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (LOG_MIN_HEIGHT, "-tall")]
    BINDINGS = [
        Binding("p", "pause", "Pause"),
        Binding("p", "resume", "Resume"),
        Binding("f", "finish", "Finish & quit"),
        Binding("l", "toggle_log", "Log"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "request_quit", "Quit"),
    ]

    snapshot: reactive[Snapshot | None] = reactive(None)
    """The newest snapshot from the source; None until the first arrives."""

    disconnected: reactive[bool] = reactive(False)
    """True while the source raises ``ConnectionError``: what is shown is the last snapshot seen."""

    connection_problem: reactive[str | None] = reactive(None)
    """Why the source is unreachable and when the next try is; None while connected."""

    finishing: reactive[bool] = reactive(False)
    """True once FINISH was sent: the app quits when the session reaches STOPPED."""

    show_log: reactive[bool] = reactive(False)
    """Whether the event log pane is shown (``l`` toggles it)."""

    def __init__(self, source: SnapshotSource, poll_interval: float = POLL_INTERVAL, *, attach: bool = False) -> None:
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval}")
        super().__init__()
        self.source = source
        self.poll_interval = poll_interval
        self.attach = attach
        self._stop = threading.Event()
        self._events: deque[Event] = deque(maxlen=RECENT_EVENTS)
        self._trust_screen: TrustScreen | None = None
        self._trust_answered = False
        self._failure_screen: FailureScreen | None = None
        self._notified_error: ErrorInfo | None = None

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="header").data_bind(
            VolunteerApp.snapshot, VolunteerApp.disconnected, VolunteerApp.finishing
        )
        yield Banner(id="banner").data_bind(VolunteerApp.connection_problem)
        with Grid(id="panels"):
            yield YouPanel(id="you", classes="panel").data_bind(VolunteerApp.snapshot)
            yield SwarmPanel(id="swarm", classes="panel").data_bind(VolunteerApp.snapshot)
            yield Leaderboard(id="leaderboard", classes="panel").data_bind(VolunteerApp.snapshot)
            yield HistoryPanel(id="history", classes="panel").data_bind(VolunteerApp.snapshot)
            yield EventLog(id="log", classes="panel")
        yield Footer()

    def on_mount(self) -> None:
        self.show_log = self.size.height >= LOG_MIN_HEIGHT
        self._apply_show_log()
        self.poll_source()

    def on_unmount(self) -> None:
        self._stop.set()

    # polling: the only place the source is read

    @work(thread=True, exclusive=True, group="poll", exit_on_error=False, name="poll source")
    def poll_source(self) -> None:
        """Read the source every ``poll_interval`` and post what changed; back off while it is unreachable."""
        worker = get_current_worker()
        last: Snapshot | None = None
        seq = 0
        failures = 0
        while not (worker.is_cancelled or self._stop.is_set()):
            started = time.monotonic()
            try:
                snapshot = self.source.latest()
                if last is not None and snapshot.uptime + RESTART_TOLERANCE < last.uptime:
                    # A restarted headless session numbers its events from 1 again.
                    seq = 0
                    self.post_message(SessionRestarted())
                # a source that numbers its events spares the request while there is nothing new
                newest = snapshot.last_event_seq
                events = self.source.events_since(seq) if newest is None or newest > seq else []
            except ConnectionError as error:
                failures += 1
                delay = retry_delay(failures, self.poll_interval)
                self.post_message(SourceDisconnected(str(error), delay, failures))
                self._stop.wait(delay)
                continue
            if failures:
                failures = 0
                self.post_message(SourceReconnected())
            if events:
                seq = max(seq, events[-1].seq)
                self.post_message(EventsArrived(tuple(events)))
            if snapshot != last:
                last = snapshot
                self.post_message(SnapshotUpdated(snapshot))
            self._stop.wait(max(0.0, self.poll_interval - (time.monotonic() - started)))

    def on_snapshot_updated(self, message: SnapshotUpdated) -> None:
        self.snapshot = message.snapshot

    def on_events_arrived(self, message: EventsArrived) -> None:
        self._events.extend(message.events)
        self.query_one(EventLog).add_events(message.events)

    def on_session_restarted(self, _message: SessionRestarted) -> None:
        self._events.clear()
        self.query_one(EventLog).restart()
        self.notify("The session restarted.", title="restarted")

    def on_source_disconnected(self, message: SourceDisconnected) -> None:
        self.disconnected = True
        self.connection_problem = f"{message.error} (try {message.attempt}, next in {message.retry_in:.1f}s)"

    def on_source_reconnected(self, _message: SourceReconnected) -> None:
        self.disconnected = False
        self.connection_problem = None
        self.notify("Connected to the session again.", title="reconnected")

    # reacting to snapshots

    def watch_snapshot(self, old: Snapshot | None, new: Snapshot | None) -> None:
        if new is None:
            return
        self._show_error(new)
        self._follow_consent(new)
        self._follow_failure(new)
        if new.state is State.STOPPED and (old is None or old.state is not State.STOPPED):
            if self.finishing:
                self.exit()
                return
            self.notify("The session stopped. Press q to quit.", title="stopped")
        if old is None or old.state is not new.state:
            # which keys apply depends on the state alone; refreshing them rebuilds the footer
            self.refresh_bindings()

    def watch_disconnected(self) -> None:
        self.refresh_bindings()

    def watch_finishing(self) -> None:
        self.refresh_bindings()

    def watch_show_log(self) -> None:
        # first set in on_mount, once the panels exist (App.is_mounted is a method: it was no guard)
        self._apply_show_log()

    def _apply_show_log(self) -> None:
        self.query_one(EventLog).display = self.show_log
        self.query_one("#panels").set_class(self.show_log, "-log")

    def _show_error(self, snapshot: Snapshot) -> None:
        error = snapshot.last_error
        self.query_one(Banner).error = error
        # A failed session gets the failure screen instead of a toast over it.
        if error is not None and error != self._notified_error and snapshot.state is not State.FAILED:
            body = fmt.plain(error.message) + (f"\nhint: {fmt.plain(error.hint)}" if error.hint else "")
            self.notify(body, title="error", severity="error", timeout=8, markup=False)
        self._notified_error = error

    def _follow_consent(self, snapshot: Snapshot) -> None:
        if snapshot.state is not State.WAITING_FOR_CONSENT:
            self._trust_answered = False
            if self._trust_screen is not None:
                # Consent came from elsewhere (another attached view): the question is moot.
                screen, self._trust_screen = self._trust_screen, None
                if screen in self.screen_stack:
                    screen.pop_until_active()
                    screen.dismiss(None)
            return
        if self._trust_screen is None and not self._trust_answered:
            self._trust_screen = TrustScreen(snapshot.project)
            self.push_screen(self._trust_screen, self._on_trust_answer)

    def _on_trust_answer(self, trusted: bool | None) -> None:
        if self._trust_screen is None:
            return
        self._trust_screen = None
        self._trust_answered = True
        if trusted:
            self.deliver(Command.TRUST)
        else:
            self._quit(stop=not self.attach)

    def _follow_failure(self, snapshot: Snapshot) -> None:
        if snapshot.state is State.FAILED:
            if self._failure_screen is None:
                self._failure_screen = FailureScreen(snapshot, self._events, attach=self.attach)
                self.push_screen(self._failure_screen)
        elif self._failure_screen is not None:
            # A restarted headless session recovered: back to the figures.
            screen, self._failure_screen = self._failure_screen, None
            if screen in self.screen_stack:
                screen.pop_until_active()
                screen.dismiss(None)

    # commands: sent from a worker thread, never from the UI thread

    @work(thread=True, group="control", exit_on_error=False, name="send command")
    def deliver(self, command: Command, then_exit: bool = False) -> None:
        """Send ``command`` to the session; with ``then_exit``, quit once it was sent (or failed)."""
        try:
            self.source.send(command)
        except (ConnectionError, ValueError) as error:
            self.post_message(CommandFailed(command, str(error)))
        finally:
            if then_exit:
                self.call_from_thread(self.exit)

    def on_command_failed(self, message: CommandFailed) -> None:
        self.notify(
            fmt.plain(message.error),
            title=f"could not {message.command.value}",
            severity="error",
            timeout=10,
            markup=False,
        )

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one error boundary: a worker that raised becomes a readable message, never a traceback."""
        if event.state is not WorkerState.ERROR:
            return
        error = event.worker.error
        if event.worker.group == "poll":
            failed = ErrorInfo(
                f"this screen stopped reading the session: {error}",
                "the session itself may still be running; restart the TUI (volunteer attach) to see it",
            )
            base = self.snapshot or Snapshot(time=0.0)
            self._failure_screen = FailureScreen(
                base.replace(state=State.FAILED, last_error=failed), self._events, attach=self.attach
            )
            self.push_screen(self._failure_screen)
        else:
            self.notify(fmt.plain(error), title="command failed", severity="error", timeout=10, markup=False)

    # keys

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action not in APP_ACTIONS:
            return True
        if self.screen is not self.screen_stack[0]:
            return False
        state = self.snapshot.state if self.snapshot else None
        if action == "pause":
            if state is State.PAUSED:
                return False
            return True if state in ACTIVE_STATES and not self.disconnected else None
        if action == "resume":
            return None if self.disconnected else state is State.PAUSED
        if action == "finish":
            live = state in ACTIVE_STATES or state is State.PAUSED
            return True if live and not self.finishing and not self.disconnected else None
        return True

    def action_pause(self) -> None:
        self.deliver(Command.PAUSE)
        self.notify("Pausing: nothing is computed until you resume (p).", title="pause")

    def action_resume(self) -> None:
        self.deliver(Command.RESUME)
        self.notify("Resuming training.", title="resume")

    def action_finish(self) -> None:
        self.finishing = True
        self.deliver(Command.FINISH)
        self.notify("Leaving after the current global step, then quitting.", title="finish")

    def action_toggle_log(self) -> None:
        self.show_log = not self.show_log

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_request_quit(self) -> None:
        snapshot = self.snapshot
        if snapshot is not None and snapshot.state in ACTIVE_STATES and not self.disconnected:
            self.push_screen(QuitScreen(attach=self.attach), self._on_quit_choice)
            return
        self._quit(stop=not self.attach)

    def _on_quit_choice(self, choice: QuitChoice | None) -> None:
        if choice == "stop":
            self._quit(stop=True)
        elif choice == "finish":
            self.action_finish()
        elif choice == "detach":
            self.exit()

    def _quit(self, *, stop: bool) -> None:
        """Quit; with ``stop``, first ask a live session to stop (a local one must not outlive its view)."""
        snapshot = self.snapshot
        live = snapshot is not None and snapshot.state not in ENDED_STATES and not self.disconnected
        if stop and live:
            self.deliver(Command.STOP, then_exit=True)
        else:
            self.exit()
