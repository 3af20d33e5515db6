"""Heartbeat listener (UDP) and dyndns2 update API (HTTP): the public entry points for clients."""
