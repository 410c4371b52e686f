"""``python -m minicnn ...`` is the ``minicnn`` command (see ``minicnn.cli``)."""

from minicnn.cli import main

raise SystemExit(main())
