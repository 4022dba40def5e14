import sys

from gpueval.cli import main
from gpueval.startup import exit_now, wants_fast_exit

code = main()
if wants_fast_exit(sys.argv[1:]):
    exit_now(code)  # skips the interpreter's teardown (~0.2 s): see gpueval.startup
sys.exit(code)
