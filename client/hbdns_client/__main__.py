"""``python -m hbdns_client``: the same as the ``hbdns-client`` command (what a Windows task runs)."""

import sys

from hbdns_client.cli import main

sys.exit(main())
