"""`python -m relay` is the same as the `ccguard` command."""

from relay.cli import main

__all__: list[str] = []

raise SystemExit(main())
