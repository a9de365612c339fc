import sys

from jpixd.cli import main

sys.exit(main())
