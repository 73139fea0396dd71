-- requires: 20.5
-- A read-only analyst user through SQL access control (ClickHouse 20.5 and later).
-- ClickHouse 18.16 has no SQL user management: there the analyst user is defined in
-- users.xml with readonly=1 (infra/clickhouse/users.xml) and this migration is skipped.
-- The password comes from CHORUS_ANALYST_PASSWORD; it is never written to a file or log.
CREATE USER IF NOT EXISTS analyst IDENTIFIED WITH sha256_password BY {{analyst_password}}
    SETTINGS readonly = 1;
GRANT SELECT ON {{database}}.* TO analyst;
