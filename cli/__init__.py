"""The ``signalements`` command line: one module per command group (see ``cli.main``). Nothing imports it."""
