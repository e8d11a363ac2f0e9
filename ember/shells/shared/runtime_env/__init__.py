"""Runtime environments on a node: packages (working_dir, py_modules) and pip virtual environments.

Shared by every process that prepares an environment: the job supervisor (in a worker), the
node daemon's worker pool, and the client that packs a local directory.
"""
