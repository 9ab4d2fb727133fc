"""Governing Data Services Centre: registry, PKI, scheduler, collector, store."""
