"""The payment provider simulator: a card processor with a Stripe-like API. It takes
payments, lets "the attendee's card" succeed, decline, hang or answer late, pays refunds, and
tells its merchant what happened by signed HTTP notifications, retried until they are taken.
It is not Butterfly and shares none of its contract.
"""
