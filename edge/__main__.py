"""`python -m edge ...` is the same as the `gridwatch-edge` command."""

from edge.cli import main

raise SystemExit(main())
