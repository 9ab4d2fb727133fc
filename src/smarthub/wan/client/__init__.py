"""The GDSC's side of the WAN: walking a hub's resources, the bulk pull, delivering commands."""
