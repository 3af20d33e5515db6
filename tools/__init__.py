"""The dev stack (``make run``) and other tools for a checkout; not installed."""
