"""``python -m registry`` is ``avatar-registry``."""

import sys

from registry.cli import main

sys.exit(main())
