"""The event loop of one simulated deployment: requests, batches, KV cache blocks, replicas, routers and the run's metrics."""
