"""`python -m relay` is the same as the `ccguard` command."""

from relay.cli import main

raise SystemExit(main())
