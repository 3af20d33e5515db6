"""ACME DNS-01 for customers' ACME clients, served by the update API: the acme-dns protocol under
``/acme-dns`` and lego's httpreq under ``/httpreq`` (docs/acme.md)."""
