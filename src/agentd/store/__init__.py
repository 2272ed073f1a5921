"""Where bytes touch the disk (and, later, a database): the queue, leases, the journal, PID files."""
