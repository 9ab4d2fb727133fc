"""Home area network: transports (serial, TCP, simulated), the meter registry, poll/push loops."""
