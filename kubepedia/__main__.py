import sys

from kubepedia.cli import main

# Guarded: the syncer's decoder processes (syncer.decoding) are spawned, and import the
# main module of the process that starts them.
if __name__ == "__main__":
    sys.exit(main())
