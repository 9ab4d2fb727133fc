"""smarthub: a smart-metering platform with a decentralised headend.

Every home has a Smart Hub that collects readings from its meters and serves them as
IEEE 2030.5 resources; the Governing Data Services Centre (GDSC) pulls them on a
capacity-planned schedule. See DESIGN.md in the shared folder for the architecture.
"""

__version__ = "0.1.0"
