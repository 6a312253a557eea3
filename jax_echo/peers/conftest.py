"""pytest's ``--doctest-modules`` imports every module here; a peer's library is optional."""

import importlib.util

from jax_echo.peers import PEERS

collect_ignore = sorted(
    {f"{p.library}_peer.py" for p in PEERS if importlib.util.find_spec(p.library) is None}
)
