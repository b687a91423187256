"""The daemon: a broker process (the ZeroMQ ROUTER, the job queue; never imports torch) and a
spawned worker process that keeps the engine warm and runs one job at a time.

Modules: `lifecycle` (serve: bind, connection file, signals), `broker` (the socket loop),
`scheduler` (jobs and the worker, no sockets), `jobs` (pure job states, queue, kept results),
`supervisor` (starts and restarts the worker process), `events` (what broker and worker say to
each other), and, in the worker process only, `worker` and `job_params`.
"""
