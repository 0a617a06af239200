-- The identity of this database: WatchRevocations puts it in its cursors, so that a cursor
-- from another database (or from this one before it was recreated) is told apart and
-- answered with the whole set rather than resumed from a row number that means nothing here.
CREATE TABLE database_identity (
    id TEXT NOT NULL
) STRICT;

INSERT INTO database_identity (id) VALUES (lower(hex(randomblob(16))));
