-- One row per scoring of one submission under one metric version against one truth.
-- Key: (challenge, metric_version, submission_hash, truth_hash); revision counts re-scorings
-- of the same key (--force, or a retry after an infrastructure failure): rows are never
-- updated or deleted, so every result ever recorded is kept with its timestamps.
CREATE TABLE results (
    challenge        TEXT NOT NULL,
    metric_version   TEXT NOT NULL,
    submission_hash  TEXT NOT NULL,      -- sha256 of the submission's content (file or tree)
    truth_hash       TEXT NOT NULL,      -- sha256 of the truth's content
    revision         INTEGER NOT NULL,   -- 0 for the first result of a key, then 1, 2, ...
    submission_name  TEXT NOT NULL,      -- entry name in the submissions folder
    status           TEXT NOT NULL,      -- ok | rejected | failed (timeout, crash, memory)
    error            TEXT,               -- one line: why rejected or failed
    score            DOUBLE PRECISION,   -- headline score (NULL when none)
    result_json      TEXT NOT NULL,      -- the full result JSON (cli.md contract)
    runtime_seconds  DOUBLE PRECISION,
    device           TEXT,
    gpueval_version  TEXT NOT NULL,
    config_hash      TEXT NOT NULL,      -- sha256 of the resolved configuration
    started_at       TEXT NOT NULL,      -- ISO-8601 UTC
    finished_at      TEXT NOT NULL,      -- ISO-8601 UTC
    PRIMARY KEY (challenge, metric_version, submission_hash, truth_hash, revision)
);

CREATE INDEX results_by_version ON results (challenge, metric_version, finished_at);
