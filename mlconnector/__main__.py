"""`python -m mlconnector` runs the command-line tool."""

from mlconnector.cli.main import run

run()
