import sys

from gpueval.startup import run

sys.exit(run())  # score/validate end inside run(), skipping the interpreter's teardown
