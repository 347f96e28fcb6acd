import sys

from seatledger.cli.main import main

sys.exit(main())
