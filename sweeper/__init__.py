"""The liveness sweeper (``hbdns-sweeper``): turns due deadlines into neutralized transitions."""
