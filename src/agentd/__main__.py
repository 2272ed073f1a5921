"""``python -m agentd``."""

from agentd.cli import main

main()
