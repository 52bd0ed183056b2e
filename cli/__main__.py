"""`python -m cli`: the same as the `phivault` command."""

from cli.main import main

main()
