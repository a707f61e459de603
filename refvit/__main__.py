import sys

from refvit.cli import main

sys.exit(main())
