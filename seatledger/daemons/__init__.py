"""Processes: the master and slave daemons, the read-model follower, and the supervisor
that decides what restarts."""
