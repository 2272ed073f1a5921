"""Acting on one host: the daemon loop, one pass's transaction, spawning and supervising task commands."""
