"""The neutral host: what an account's neutral address points at (``hbdns-neutral-host``)."""
