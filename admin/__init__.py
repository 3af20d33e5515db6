"""The operator's admin surfaces: the ``hbdns`` command line."""
