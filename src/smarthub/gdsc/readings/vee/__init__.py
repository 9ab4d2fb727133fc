"""Validation, estimation and editing (VEE) of the readings the GDSC pulls.

* :mod:`.rules` — pure validation rules (no database, no clock): timestamps, negative values,
  spikes beyond the connection's capacity, register monotonicity and rollover, interval sum
  vs register advance, stuck-meter suspicion, GB gas volume → energy conversion;
* :mod:`.gate` — runs the rules over one pull's grouped readings and splits them into what
  lands, what is flagged and what is quarantined (still pure);
* :mod:`.estimate` — pure gap estimation (linear between registers, same-weekday profile);
* :mod:`.store` — the quarantine, estimates, day versions and meter models tables, and the
  data-quality figures.
"""
