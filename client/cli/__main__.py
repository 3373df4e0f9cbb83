"""``python -m client.cli``: the `syncwire` command."""

import sys

from .app import main

sys.exit(main())
