import sys

from jax_echo.cli import main

sys.exit(main())
