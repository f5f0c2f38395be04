"""`python -m node.agent CONFIG [CONFIG ...] [--netns PATH ...]`: run a node agent (see node.agent.agent)."""
import sys

from node.agent.agent import main

sys.exit(main())
