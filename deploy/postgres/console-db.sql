-- The consoles' database (users, the audit log), beside the business database: every gateway's consoles use it
-- (HOTLINE_CONSOLE_DB_URL), so a sign-in and the audit trail are the same whichever gateway serves the page.
-- Run once by the postgres image on an empty data volume (/docker-entrypoint-initdb.d).
CREATE DATABASE hotline_console OWNER hotline;
