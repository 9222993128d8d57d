"""``python -m pgdeploy``."""

from pgdeploy.cli import main

main(prog_name="pgdeploy")
