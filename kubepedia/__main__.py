import sys

from kubepedia.cli import main

sys.exit(main())
