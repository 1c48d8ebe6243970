import sys

from ccf_agent.cli import main

sys.exit(main())
