"""The payment provider as Butterfly sees it: a port, and its HTTP client."""
