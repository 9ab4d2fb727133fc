"""``python -m smarthub.cli``."""

from smarthub.cli import main

main()
