"""`python -m hwc_watcher` is the same as the `hwc-watcher` command."""

import sys

from hwc_watcher.commands.cli import main

sys.exit(main())
