"""WAN: IEEE 2030.5 resources over HTTPS with mutual TLS (hub = server, GDSC = client).

* :mod:`~smarthub.wan.contract` — what the hub and the GDSC agree on and both import: the
  2030.5 documents and href scheme, list paging, diagnosis codes and their labels, the event
  detail, the management command envelope and types, the CRL header of the bulk pull.
* :mod:`~smarthub.wan.server` — the hub's side: the 2030.5 resources it serves (imports the hub).
* :mod:`~smarthub.wan.client` — the GDSC's side: the walk, the bulk pull, command delivery.
* :mod:`~smarthub.wan.tls` — mutual TLS contexts for both sides.

The client side never imports the server side or the hub (``tests/test_layering.py`` checks
it transitively, in a fresh interpreter), so the GDSC ships without any hub code.
"""
