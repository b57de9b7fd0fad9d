import sys

from nemo_taskseed.cli import main

sys.exit(main())
