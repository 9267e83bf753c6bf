"""Helpers shared by the tests: a Hub-compatible server, a static HTTP server, project folders."""
