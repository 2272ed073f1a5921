-- The journal's retention: when it was last pruned (one daemon of the project prunes it at most once an hour), and
-- an index to find old events by time.
CREATE TABLE agentd_upkeep (
    name text PRIMARY KEY,
    at timestamptz NOT NULL
);
CREATE INDEX agentd_events_at ON agentd_events (at);
