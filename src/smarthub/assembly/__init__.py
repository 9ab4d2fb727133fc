"""The hub's composition root: a typed configuration (TOML or code) in, a complete hub out.

Used by ``smarthub hub`` and by every home of the simulated fleet, so both run one code path.
It sits above ``hub`` and ``wan`` (it wires the hub core to its WAN server), below ``sim`` and
``cli``.
"""
