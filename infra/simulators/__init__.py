"""Stand-ins for the third parties Butterfly talks to, each run as its own process with its
own state, API and topic format, so Butterfly's ports are tested against something that
behaves (and misbehaves) like a real partner rather than against a mock."""
