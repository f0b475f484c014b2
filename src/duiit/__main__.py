"""`python -m duiit` runs the command-line interface."""

from duiit.cli import main

main()
