"""`python -m minicnn ...` is the `minicnn` command (see minicnn.cli)."""
import sys

from minicnn.cli import main

sys.exit(main())
