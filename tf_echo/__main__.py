import sys

from tf_echo.cli import main

sys.exit(main())
