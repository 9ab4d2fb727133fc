"""The hub's side of the WAN: the IEEE 2030.5 resources it serves over mutual TLS."""
