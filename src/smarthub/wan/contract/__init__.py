"""The WAN contract: everything the hub (server) and the GDSC (client) must agree on.

Both sides import these modules; nothing here imports either side (only ``model`` and
``security``), so a table both sides need exists once and cannot drift.
"""
