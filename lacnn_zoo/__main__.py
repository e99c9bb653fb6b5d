import sys

from lacnn_zoo.cli import main

sys.exit(main())
