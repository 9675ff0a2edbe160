"""`python -m dpm_lab.course ...` (see the package docstring)."""
import sys

from .cli import main

sys.exit(main())
