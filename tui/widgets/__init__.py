"""The main screen's panels, one module each."""

from tui.widgets._banner import Banner
from tui.widgets._event_log import EventLog
from tui.widgets._history_panel import HistoryPanel
from tui.widgets._leaderboard import Leaderboard
from tui.widgets._status_header import StatusHeader
from tui.widgets._swarm_panel import SwarmPanel
from tui.widgets._you_panel import YouPanel

__all__ = ["Banner", "EventLog", "HistoryPanel", "Leaderboard", "StatusHeader", "SwarmPanel", "YouPanel"]
