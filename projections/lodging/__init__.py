"""The lodging read models: room requests, hotel blocks with our own pickup, syncs, the
lottery and reconciliations, projected from `lodging.events` (and `lodging.commands`)."""
