"""Many-simulation studies: sweeps, scheduler comparison, capacity search, capacity plans and validation against measured runs."""
