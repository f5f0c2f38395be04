"""`python -m testbed.cli ...` is `pktlab ...`."""
import sys

from testbed.cli import main

sys.exit(main())
