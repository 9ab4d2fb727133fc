"""Trust primitives shared by hub, WAN and GDSC (certificate checks, device identifiers)."""
