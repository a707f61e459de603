import sys

from refvit.cli import main

sys.exit(main(["bench", *sys.argv[1:]]))
