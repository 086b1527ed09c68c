"""``python -m rdmd``: the ``rdmd`` command, for environments whose scripts are not on PATH."""

from rdmd.cli import main

raise SystemExit(main())
