"""Readings at the GDSC: ingest into compact interval blocks, queries by granularity, export,
bills, similar-homes comparisons."""
