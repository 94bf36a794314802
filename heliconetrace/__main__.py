import sys

from heliconetrace._cli import main

sys.exit(main())
