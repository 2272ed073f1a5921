"""The file store: the JSON queue file, lease files, the event journal and PID files on disk."""
