"""``python -m driftline.stream.cli``: the ``driftline`` console script."""

import sys

from .commands import main

sys.exit(main())
