"""The ``chainrule`` command (``main.py``) and its subcommands: ``demo``, ``gradcheck``, ``dump``,
``dot`` and ``bench nested``. The CLI is a client of the library, like a user's program: the
functions it compiles (the demo's network, the benchmark's nested function) count as user code."""
