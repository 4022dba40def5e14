-- Identity of a submission: its name in the submissions folder, and the content it holds.
-- results stays the cache of scorings by content (identical bytes are scored once); this
-- table says which names hold which content. A name whose file changed gets a new revision
-- (the old one kept, state superseded); a name gone from the folder is marked withdrawn,
-- never deleted. Names are stored escaped (gpueval.rescore.escape_name), so any byte string
-- a file system allows round-trips through this TEXT column.
CREATE TABLE submission_names (
    challenge        TEXT NOT NULL,
    name             TEXT NOT NULL,      -- escaped entry name in the submissions folder
    revision         INTEGER NOT NULL,   -- 0 for the first content seen under the name, then 1, 2
    submission_hash  TEXT NOT NULL,      -- results.submission_hash of that content
    state            TEXT NOT NULL,      -- current | superseded | withdrawn
    first_seen       TEXT NOT NULL,      -- ISO-8601 UTC
    state_changed_at TEXT NOT NULL,      -- ISO-8601 UTC
    PRIMARY KEY (challenge, name, revision)
);

CREATE INDEX submission_names_by_state ON submission_names (challenge, state);

-- Databases written before this migration: every (name, content) scored becomes a revision of
-- that name, oldest first; the newest content of each name is current, the older superseded.
INSERT INTO submission_names (challenge, name, revision, submission_hash, state, first_seen,
                              state_changed_at)
SELECT challenge, submission_name,
       ROW_NUMBER() OVER (PARTITION BY challenge, submission_name
                          ORDER BY first_seen, submission_hash) - 1,
       submission_hash,
       CASE WHEN ROW_NUMBER() OVER (PARTITION BY challenge, submission_name
                                    ORDER BY first_seen DESC, submission_hash DESC) = 1
            THEN 'current' ELSE 'superseded' END,
       first_seen, first_seen
FROM (SELECT challenge, submission_name, submission_hash, MIN(finished_at) AS first_seen
      FROM results GROUP BY challenge, submission_name, submission_hash) scored;
