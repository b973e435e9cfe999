"""The website (attendees, `/`) and the administration app (`/admin`): server-rendered pages.

Every page is a client of the gateway's own JSON API, called in process (`api.py`): the
pages hold no rule of their own, so the website, the admin app and API clients are refused,
validated and rate-limited alike. Forms post and redirect without JavaScript; htmx (served
from `static/`) only makes the live parts live: a registration's status turning from
"being confirmed" to its decision, and the dashboards refreshing.
"""
