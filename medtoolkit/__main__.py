"""``python -m medtoolkit`` runs the command line."""

import sys

from medtoolkit.cli import main

sys.exit(main())
