-- agentd schema 1: the queue as rows, leases, tokens, project state, the journal, daemons, the archive.
-- Applied by `agentd store init` (agentd.store.postgres.migrations), in one transaction, recorded in agentd_schema.

-- The queue's top-level fields other than "tasks" (wip_limits, sprint metadata...), as the JSON text of one object
-- whose "tasks" is []: key order kept. rev rises whenever tasks come or go or their ids or dependencies change, so
-- two such transactions conflict (duplicate ids, unknown dependencies and cycles are checked against a whole queue).
CREATE TABLE agentd_queue (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    doc text NOT NULL,
    rev bigint NOT NULL DEFAULT 0
);

CREATE SEQUENCE agentd_rev;        -- every version of a task row gets a new one
CREATE SEQUENCE agentd_position;   -- the order of top-level tasks: a new task goes after every other

-- One row per top-level task: its JSON text exactly as agentd wrote it (subtasks included, unknown fields and key
-- order kept: text, not jsonb, which reorders keys), the ids of the task and its subtasks, and its version.
CREATE TABLE agentd_tasks (
    position bigint PRIMARY KEY DEFAULT nextval('agentd_position'),
    id text,
    ids text[] NOT NULL,
    body text NOT NULL,
    rev bigint NOT NULL DEFAULT nextval('agentd_rev')
);
CREATE INDEX agentd_tasks_rev ON agentd_tasks (rev);
CREATE INDEX agentd_tasks_ids ON agentd_tasks USING gin (ids);

-- The fencing-token high-water mark: never goes back, whatever happens to the tasks.
CREATE TABLE agentd_tokens (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    mark bigint NOT NULL
);
INSERT INTO agentd_tokens (mark) VALUES (0);

-- One row per lease. The holder's session holds the advisory lock pg_advisory_lock(token) for as long as the work
-- lives; heartbeat is the database's now() at the last renewal.
CREATE TABLE agentd_leases (
    task_id text PRIMARY KEY,
    token bigint NOT NULL,
    role text NOT NULL,
    record text NOT NULL,
    acquired timestamptz NOT NULL DEFAULT now(),
    heartbeat timestamptz NOT NULL DEFAULT now(),
    ttl double precision NOT NULL
);
CREATE INDEX agentd_leases_role ON agentd_leases (role);

-- Project state (pauses, automation switches): one JSON object, key order kept.
CREATE TABLE agentd_state (
    singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    doc text NOT NULL
);
INSERT INTO agentd_state (doc) VALUES ('{}');

-- The journal: one row per event, its JSON line as written.
CREATE TABLE agentd_events (
    seq bigserial PRIMARY KEY,
    at timestamptz NOT NULL,
    event text NOT NULL,
    role text,
    task text,
    line text NOT NULL
);
CREATE INDEX agentd_events_task ON agentd_events (task);

-- Daemons: one row per name (role[.instance]); its session holds the advisory lock (namespace, lock_key) while it
-- runs.
CREATE TABLE agentd_daemons (
    name text PRIMARY KEY,
    lock_key integer NOT NULL,
    info text NOT NULL,
    started timestamptz NOT NULL DEFAULT now(),
    beat timestamptz NOT NULL DEFAULT now()
);

-- Archived top-level tasks (with their subtasks), oldest first.
CREATE TABLE agentd_archive (
    position bigserial PRIMARY KEY,
    id text NOT NULL,
    ids text[] NOT NULL,
    body text NOT NULL,
    archived_at text
);
CREATE INDEX agentd_archive_ids ON agentd_archive USING gin (ids);

-- Wake-ups: every change to the queue, and every lease that goes, notifies channel agentd.
CREATE FUNCTION agentd_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('agentd', TG_ARGV[0]);
    RETURN NULL;
END $$;
CREATE TRIGGER agentd_tasks_notify AFTER INSERT OR UPDATE OR DELETE ON agentd_tasks
    FOR EACH STATEMENT EXECUTE FUNCTION agentd_notify('queue');
CREATE TRIGGER agentd_queue_notify AFTER INSERT OR UPDATE OR DELETE ON agentd_queue
    FOR EACH STATEMENT EXECUTE FUNCTION agentd_notify('queue');
CREATE TRIGGER agentd_leases_notify AFTER DELETE ON agentd_leases
    FOR EACH STATEMENT EXECUTE FUNCTION agentd_notify('lease');
