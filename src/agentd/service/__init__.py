"""Background daemons: detaching, PID files and stop/status, log files, systemd and launchd units."""
