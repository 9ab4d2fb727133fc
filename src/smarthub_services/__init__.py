"""Third-party data services built the way an outside company would build them (issue 25 item 2).

Each service is a separate small program that talks to the GDSC only through its public data
services API over HTTP: an OAuth2 client (client credentials grant, RFC 6749 §4.4) issued when
the GDSC approved the service, and the documented JSON endpoints. Nothing here imports the GDSC,
the hub or the simulator (``smarthub``): a test checks it, so these programs stand as examples of
what the published API alone is enough for. Only the Python standard library is used.

* :mod:`.tariff_advisor`: prices a consenting home's last 12 months of half-hourly consumption
  under each tariff of a published catalogue and recommends the cheapest.
* :mod:`.topup_provider`: turns card and mobile payments (:mod:`.payments`, a simulated payment
  provider) into prepayment top-ups, exactly once, with receipts and refunds.
"""
