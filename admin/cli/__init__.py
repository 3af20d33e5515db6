"""``hbdns``, the operator's command line: one module per command group.

:mod:`~admin.cli.main` (the parser and the exit codes), :mod:`~admin.cli.zones`,
:mod:`~admin.cli.accounts`, :mod:`~admin.cli.status` and :mod:`~admin.cli.output` (tables, JSON,
refusals). Every command is ``func(store, args) -> exit code`` and registers its own subparser.
"""
