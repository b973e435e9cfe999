"""The account read models: accounts, their roles with an audit trail of every grant and
revocation, and how each account command ended, projected from `accounts.events`."""
