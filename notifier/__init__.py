"""Liveness sweeper and notifier: turns due deadlines into transitions and transitions into messages."""
