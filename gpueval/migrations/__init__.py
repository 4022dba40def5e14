"""Schema migrations of the results database (:mod:`gpueval.db`).

Plain numbered SQL files ``NNNN_<name>.sql``, applied in order, each in one transaction together
with its row in ``schema_version``. The SQL is the common subset of SQLite and PostgreSQL
(``TEXT``, ``INTEGER``, ``BIGINT``, ``DOUBLE PRECISION``; timestamps are ISO-8601 UTC text) so one
file serves both. Never edit a released file: add the next number.
"""
