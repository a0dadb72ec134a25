import sys

from evaluation.fakellm.server import main

sys.exit(main())
