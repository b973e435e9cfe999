"""Order processes driven by time rather than by a message: the order clock."""
