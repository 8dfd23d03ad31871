"""``python -m homeserver``: the same as the ``homeserver`` command."""

import sys

from homeserver.cli import main

sys.exit(main())
