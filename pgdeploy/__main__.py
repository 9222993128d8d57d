"""``python -m pgdeploy``."""

from pgdeploy.cli import console_main

console_main()
