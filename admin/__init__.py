"""The operator's surfaces: the ``hbdns`` admin CLI (``admin.cli``); later the private provisioning API."""
