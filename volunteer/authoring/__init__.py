"""Tools for the authors of a project: ``volunteer init``, ``check``, ``publish`` and ``host``.

- :mod:`~volunteer.authoring.init` scaffolds a project folder that passes ``check`` unchanged;
- :mod:`~volunteer.authoring.check` validates a project as a volunteer's client would and trains it a few
  steps on this machine, without hivemind;
- :mod:`~volunteer.authoring.publish` uploads a checked project to the Hub and prints how volunteers join;
- :mod:`~volunteer.authoring.host` runs a long-lived bootstrap and auxiliary peer that keeps the published peer
  list fresh, gathers the swarm's metrics and saves checkpoints.

Like the rest of the CLI, nothing heavy is imported until a command needs it.
"""
