"""One module per model runner: its ``SPECS`` and its ``Runner`` class.

Both sides import these modules: the worker's registry reads ``SPECS``, and a runner
process loads the class by reference. So a runner module imports only ``runtime``,
``config`` and ``errors`` at top level; its model library and the ``media`` helpers
are imported inside ``setup()``/``run()``.
"""
