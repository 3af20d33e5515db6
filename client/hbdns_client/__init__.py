"""hbdns-client: the customer's heartbeat client and the heartbeat wire format (standard library only)."""
