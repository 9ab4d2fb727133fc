"""The central error log: hub diagnoses and unreachable hubs correlated into incidents, remote
repairs, work orders, the operator console."""
