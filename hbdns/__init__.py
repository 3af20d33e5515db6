"""hbdns shared core: configuration, Redis key schema, account model, wire format, liveness, CLI.

Every service imports this package; it imports no service.
"""
