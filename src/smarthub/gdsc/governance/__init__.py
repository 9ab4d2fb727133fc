"""Who may see or do what: parties, supply periods, tenancies and consents, the access policy
and its guard, the audit chain and its anchors, changes of supplier and tenancy, aggregates over
pre-defined groups."""
