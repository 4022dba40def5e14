-- Memo of per-file sha256 digests, so a resumed batch does not re-read every submission and
-- the truth: a digest is reused only while the file's size, mtime, ctime and inode are the
-- ones recorded with it (the check git's index makes). Only a cache: deleting rows is safe.
CREATE TABLE file_digests (
    path      TEXT PRIMARY KEY,   -- absolute, resolved path
    size      BIGINT NOT NULL,
    mtime_ns  BIGINT NOT NULL,
    ctime_ns  BIGINT NOT NULL,
    inode     BIGINT NOT NULL,
    sha256    TEXT NOT NULL,
    hashed_at TEXT NOT NULL
);
