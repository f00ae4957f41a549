"""``python -m precompute.cli``: the ``precompute`` console command."""
import sys

from precompute.cli import main

sys.exit(main())
