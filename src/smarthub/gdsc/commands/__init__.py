"""Commands to hubs: signed by the operator key, queued in the pull plan (the API's desk, tariff
updates, prepayment vouchers)."""
