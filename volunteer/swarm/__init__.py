"""The swarm side: the Lightning strategy's helpers (hivemind patches and guarded private reaches), the swarm
keeper, the signed leaderboard, and multiaddress parsing. ``volunteer.strategy`` (the public ``HivemindStrategy``)
uses them; nothing here is imported by the package itself, so parsing an address loads no hivemind."""
