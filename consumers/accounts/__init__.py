"""Accounts: the decider of sign-ups, verifications, passwords and roles."""
