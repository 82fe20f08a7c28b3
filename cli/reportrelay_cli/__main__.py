"""``python -m reportrelay_cli``: the ``reportrelay`` command."""

from reportrelay_cli.main import main

raise SystemExit(main())
