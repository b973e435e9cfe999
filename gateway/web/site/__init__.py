"""The website for attendees: conventions, accounts, registering, paying, lodging, waitlists.

Each handler reads its form, calls the JSON API (`gateway.web.api`) and either redirects to
the result (303) or renders the form again with the API's refusal next to its fields (422,
or the API's own 4xx). The live parts (what is left of a convention, a registration being
decided or paid, a room being booked) are fragments htmx asks for again every few seconds;
a fragment whose numbers did not change answers 204, so nothing is swapped or announced.
"""

from __future__ import annotations

from litestar import Router

from gateway.web.pages import PAGE_EXCEPTION_HANDLERS
from gateway.web.site.accounts import (
    login,
    login_form,
    logout,
    resend,
    reset,
    reset_form,
    reset_request,
    reset_request_form,
    signup,
    signup_form,
    verify,
    verify_form,
)
from gateway.web.site.common import CSRF_DETAIL, login_url, safe_next
from gateway.web.site.conventions import (
    convention,
    convention_numbers,
    conventions,
    conventions_numbers,
    home,
    join_waitlist,
    register,
)
from gateway.web.site.mine import (
    accept_offer,
    leave_waitlist,
    my_registrations,
    my_waitlist,
    waitlist_entry,
)
from gateway.web.site.registrations import (
    add_options,
    cancel,
    cancel_form,
    cancel_room,
    enter_lottery,
    give_back,
    join_option_waitlist,
    order_promo_code,
    passed_on,
    pay,
    receipt,
    registration,
    registration_lodging,
    registration_status,
    request_room,
    ticket_pdf,
    ticket_qr,
)

__all__ = ["CSRF_DETAIL", "login_url", "passed_on", "safe_next", "site_router"]

site_router = Router(
    path="/",
    route_handlers=[
        home,
        conventions,
        conventions_numbers,
        convention,
        convention_numbers,
        register,
        join_waitlist,
        login_form,
        login,
        logout,
        signup_form,
        signup,
        verify_form,
        verify,
        resend,
        reset_request_form,
        reset_request,
        reset_form,
        reset,
        registration,
        registration_status,
        registration_lodging,
        ticket_qr,
        ticket_pdf,
        receipt,
        pay,
        order_promo_code,
        cancel_form,
        cancel,
        give_back,
        add_options,
        join_option_waitlist,
        request_room,
        enter_lottery,
        cancel_room,
        my_registrations,
        my_waitlist,
        waitlist_entry,
        accept_offer,
        leave_waitlist,
    ],
    exception_handlers=PAGE_EXCEPTION_HANDLERS,
    include_in_schema=False,
)
