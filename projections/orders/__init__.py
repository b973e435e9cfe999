"""The order read models: what a convention sells (price tiers, options, promo codes, the
order policy) and every registration's orders, payments, refunds and waitlist places,
projected from `registration.events`."""
