"""`python -m miakit` is the `miakit` command."""

from miakit.cli import app

app()
