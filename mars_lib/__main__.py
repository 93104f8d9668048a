import sys

from mars_lib.cli import main

sys.exit(main())
