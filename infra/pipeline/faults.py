"""Which failures pass by themselves, and how long to wait before trying again.

A transient fault (a lost connection, a deadlock, a lock wait timeout, a broker timeout) is
retried in the process, with backoff and jitter, without a restart or a rebalance. Anything
else (an integrity or data error, a bug in a handler) will fail the same way every time: the
consumer isolates the one record that causes it and dead-letters it.
"""

from __future__ import annotations

import random

from aiokafka.errors import KafkaConnectionError, KafkaError, KafkaTimeoutError
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.exc import TimeoutError as PoolTimeout

TRANSIENT_MYSQL_ERRORS = frozenset(
    {
        1040,  # too many connections
        1053,  # server shutdown in progress
        1205,  # lock wait timeout
        1213,  # deadlock
        1927,  # connection killed
        2002,  # can't connect (socket)
        2003,  # can't connect (TCP)
        2006,  # server has gone away
        2013,  # lost connection during query
        2055,  # lost connection (system error)
    }
)


def mysql_error_code(exc: BaseException) -> int | None:
    """The server's error number behind a driver or SQLAlchemy error, if there is one."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int):
        return args[0]
    return None


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated or mysql_error_code(exc) in TRANSIENT_MYSQL_ERRORS
    if isinstance(exc, DisconnectionError | PoolTimeout | TimeoutError | ConnectionError):
        return True
    if isinstance(exc, KafkaTimeoutError | KafkaConnectionError):
        return True
    if isinstance(exc, KafkaError):
        return bool(getattr(exc, "retriable", False))
    if isinstance(exc, OSError):
        return True
    return mysql_error_code(exc) in TRANSIENT_MYSQL_ERRORS


def backoff_delay(attempt: int, *, base: float = 0.1, cap: float = 10.0) -> float:
    """Full jitter: a random wait up to an exponentially growing bound."""
    return random.uniform(0, min(cap, base * 2**attempt))
