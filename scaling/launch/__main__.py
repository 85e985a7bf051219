"""The detached local pool's entry point: python -m scaling.launch <folder>/pool.json (scaling.launch.local)."""

import sys
from pathlib import Path

from scaling.launch.local import pool_main

pool_main(Path(sys.argv[1]))
