"""The dyndns2 update API (``hbdns-update-api``): public HTTP for ddclient, inadyn and routers."""
