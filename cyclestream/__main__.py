import sys

from cyclestream.cli import main

sys.exit(main())
