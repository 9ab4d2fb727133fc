"""Getting data and commands across the WAN: the shared pull plan, the scheduler, the collector,
the command courier."""
