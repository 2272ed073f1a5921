"""The torture test: daemons killed, stopped and restarted at random while the queue is edited and read."""
