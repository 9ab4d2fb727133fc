"""Simulators: meters that emit real frames, household load profiles, the demo fleet."""
