"""Screens over the main one: help, trust dialog, quit confirmation, failure."""

from tui.screens._failure import FailureScreen
from tui.screens._help import HelpScreen
from tui.screens._quit import QuitChoice, QuitScreen
from tui.screens._trust import TrustScreen

__all__ = ["FailureScreen", "HelpScreen", "QuitChoice", "QuitScreen", "TrustScreen"]
