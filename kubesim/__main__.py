"""``python -m kubesim``."""

from kubesim.cli import main

raise SystemExit(main())
