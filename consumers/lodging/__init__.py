"""Lodging: the decider of room requests and blocks, and the process manager that calls the
lodging partner."""
