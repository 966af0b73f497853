"""CLI subcommands: each module has `register(subparsers)`; handlers return an exit status."""
