"""agentd: role daemons that run AI coding agents over a shared JSON sprint queue."""

__version__ = "0.1.0"
