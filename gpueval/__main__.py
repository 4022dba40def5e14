import sys

from gpueval.cli import main

sys.exit(main())
