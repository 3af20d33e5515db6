"""PowerDNS remote backend: answers lookups from Redis (HTTP via waitress, or unix socket)."""
