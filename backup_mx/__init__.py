"""Postfix lookup tables for the provider's backup MX, answered live from hbdns' Redis."""
