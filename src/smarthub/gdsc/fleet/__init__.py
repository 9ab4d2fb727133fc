"""The hubs the GDSC answers for: registry, PKI, commissioning, a hub's life (revocation,
replacement, decommissioning, certificate renewal)."""
