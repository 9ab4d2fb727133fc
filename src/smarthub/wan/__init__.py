"""WAN: IEEE 2030.5 resources over HTTPS with mutual TLS (hub = server, GDSC = client)."""
