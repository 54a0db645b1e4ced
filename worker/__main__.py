"""``python -m worker``: see :mod:`worker.main`."""

from worker.main import main

raise SystemExit(main())
