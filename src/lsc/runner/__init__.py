"""The study runner: images, executors, the SQLite result store, resume, and export."""
