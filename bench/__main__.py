"""``python -m bench``: run the dispatch benchmark (see ``bench/dispatch.py --help``)."""

import sys

from bench.dispatch import main

sys.exit(main())
