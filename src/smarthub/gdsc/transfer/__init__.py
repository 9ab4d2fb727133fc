"""Transfer policies: how often, when and how finely the GDSC retrieves each hub's data."""
