"""Scale-out on a Ray cluster: training jobs as Ray tasks (``training``), the prediction path as a Ray Serve
application (``serving``), and the connection to the cluster (``cluster``).

Ray is an optional extra (``pip install localize[ray]``); nothing here is imported unless a Ray address is
configured, so the embedded set-up never loads it. The database stays the source of truth for job state, and
the adapter store must be one that every node reaches (a shared path, or an fsspec URL).
"""
