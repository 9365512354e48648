-- Why a firing, unacknowledged alert is not notified (issue 5): silenced,
-- inhibited or flapping; NULL when it is not held back. Written by the
-- alerting actor whenever it changes, so lists show it. Keep in step with
-- migrations/postgres/0007_alert_held_back.sql.
ALTER TABLE alerts ADD COLUMN held_back TEXT;
