package store

import (
	"database/sql"
	"fmt"
	"time"
)

// A migration moves the schema from version-1 to version. Migrations are
// append-only: once released, a migration is never edited; changes go into
// a new one.
type migration struct {
	version int
	name    string
	apply   func(tx *wtx) error
}

// migrations is the ordered list of schema migrations; migrations[i] has
// version i+1 (TestMigrationsOrdered checks).
var migrations = []migration{
	{1, "initial schema", execAll(schemaV1)},
	{2, "why a request was cancelled", execAll([]string{
		`ALTER TABLE buildrequests ADD COLUMN cancel_reason TEXT`,
	})},
	{3, "changes, scheduler state, triggered buildsets and patches", execAll(schemaV3)},
	{4, "artifact paths, and indexes for the stats page", execAll(schemaV4)},
	{5, "package jobs, and artifacts by content", execAll(schemaV5)},
}

// execAll returns a migration that runs stmts in order.
func execAll(stmts []string) func(*wtx) error {
	return func(tx *wtx) error {
		for _, q := range stmts {
			// DDL runs once; preparing it through the statement cache
			// would only keep dead statements around.
			if _, err := tx.w.conn.ExecContext(tx.w.ctx, q); err != nil {
				return fmt.Errorf("%s: %w", firstLine(q), err)
			}
		}
		return nil
	}
}

func firstLine(s string) string {
	for i, c := range s {
		if c == '\n' || c == '(' {
			return s[:i]
		}
	}
	return s
}

// schemaVersionDDL creates the table that records applied migrations, one
// row per migration; the schema's version is the highest.
const schemaVersionDDL = `CREATE TABLE IF NOT EXISTS schema_version (
	version INTEGER PRIMARY KEY,
	name TEXT NOT NULL,
	applied_at INTEGER NOT NULL
)`

// migrate brings the schema up to the last of ms, in one transaction. It
// runs before the writer goroutine starts, on the write connection.
func (w *writer) migrate(ms []migration) error {
	return w.tx(func(tx *wtx) error {
		if _, err := w.conn.ExecContext(w.ctx, schemaVersionDDL); err != nil {
			return fmt.Errorf("create schema_version: %w", err)
		}
		var cur sql.NullInt64
		if err := w.conn.QueryRowContext(w.ctx, "SELECT MAX(version) FROM schema_version").Scan(&cur); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		have, want := int(cur.Int64), len(ms)
		if have > want {
			return fmt.Errorf("database schema version %d is newer than this starforge supports (%d): use a newer starforge or restore a backup", have, want)
		}
		for _, m := range ms[have:] {
			if err := m.apply(tx); err != nil {
				return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
			}
			if _, err := w.conn.ExecContext(w.ctx,
				"INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
				m.version, m.name, time.Now().UnixMicro()); err != nil {
				return fmt.Errorf("migration %d (%s): %w", m.version, m.name, err)
			}
		}
		return nil
	})
}

// schemaV1 follows Buildbot's tables and column names where it has them.
// Conventions, for a later PostgreSQL port: ids are INTEGER PRIMARY KEY
// (BIGSERIAL there), times INTEGER unix microseconds, booleans SMALLINT 0/1,
// results SMALLINT (NULL until finished), JSON as TEXT, blobs BLOB (BYTEA).
// Every index below serves a query in this package; the comment says which.
var schemaV1 = []string{
	`CREATE TABLE builders (
		id INTEGER PRIMARY KEY,
		name TEXT NOT NULL,
		description TEXT NOT NULL DEFAULT '',
		tags TEXT NOT NULL DEFAULT '[]'
	)`,
	// EnsureBuilder, GetBuilderByName, ListBuilders.
	`CREATE UNIQUE INDEX builders_name ON builders (name)`,

	`CREATE TABLE workers (
		id INTEGER PRIMARY KEY,
		name TEXT NOT NULL,
		info TEXT NOT NULL DEFAULT '{}',
		connected SMALLINT NOT NULL DEFAULT 0,
		last_connected INTEGER,
		last_disconnected INTEGER,
		paused SMALLINT NOT NULL DEFAULT 0,
		pause_reason TEXT NOT NULL DEFAULT ''
	)`,
	// EnsureWorker, GetWorkerByName, ListWorkers.
	`CREATE UNIQUE INDEX workers_name ON workers (name)`,

	`CREATE TABLE sourcestamps (
		id INTEGER PRIMARY KEY,
		ss_hash TEXT NOT NULL,
		codebase TEXT NOT NULL DEFAULT '',
		repository TEXT NOT NULL DEFAULT '',
		branch TEXT NOT NULL DEFAULT '',
		revision TEXT NOT NULL DEFAULT '',
		project TEXT NOT NULL DEFAULT '',
		created_at INTEGER NOT NULL
	)`,
	// Identical source stamps are stored once (AddBuildset).
	`CREATE UNIQUE INDEX sourcestamps_ss_hash ON sourcestamps (ss_hash)`,

	// Schema only for now; files and properties are JSON (a list of paths, a
	// map of name to Property) rather than Buildbot's side tables.
	`CREATE TABLE changes (
		id INTEGER PRIMARY KEY,
		author TEXT NOT NULL,
		committer TEXT NOT NULL DEFAULT '',
		comments TEXT NOT NULL DEFAULT '',
		branch TEXT NOT NULL DEFAULT '',
		revision TEXT NOT NULL DEFAULT '',
		revlink TEXT NOT NULL DEFAULT '',
		when_timestamp INTEGER NOT NULL,
		category TEXT NOT NULL DEFAULT '',
		repository TEXT NOT NULL DEFAULT '',
		codebase TEXT NOT NULL DEFAULT '',
		project TEXT NOT NULL DEFAULT '',
		files TEXT NOT NULL DEFAULT '[]',
		properties TEXT NOT NULL DEFAULT '{}',
		parent_changeid INTEGER REFERENCES changes (id),
		sourcestampid INTEGER NOT NULL REFERENCES sourcestamps (id)
	)`,
	`CREATE INDEX changes_sourcestampid ON changes (sourcestampid)`,
	`CREATE INDEX changes_parent_changeid ON changes (parent_changeid)`,

	`CREATE TABLE buildsets (
		id INTEGER PRIMARY KEY,
		reason TEXT NOT NULL DEFAULT '',
		submitted_at INTEGER NOT NULL,
		complete SMALLINT NOT NULL DEFAULT 0,
		complete_at INTEGER,
		results SMALLINT
	)`,
	`CREATE TABLE buildset_sourcestamps (
		buildsetid INTEGER NOT NULL REFERENCES buildsets (id),
		sourcestampid INTEGER NOT NULL REFERENCES sourcestamps (id),
		PRIMARY KEY (buildsetid, sourcestampid)
	)`,
	// Foreign key lookups when a source stamp is deleted.
	`CREATE INDEX buildset_sourcestamps_sourcestampid ON buildset_sourcestamps (sourcestampid)`,
	`CREATE TABLE buildset_properties (
		buildsetid INTEGER NOT NULL REFERENCES buildsets (id),
		property_name TEXT NOT NULL,
		property_value TEXT NOT NULL,
		source TEXT NOT NULL DEFAULT '',
		PRIMARY KEY (buildsetid, property_name)
	)`,

	// A request is pending while complete = 0 AND claimed_at IS NULL.
	// head_rank is 0, or positive for a request put back at the head of the
	// queue: higher ranks go first within a priority.
	`CREATE TABLE buildrequests (
		id INTEGER PRIMARY KEY,
		buildsetid INTEGER NOT NULL REFERENCES buildsets (id),
		builderid INTEGER NOT NULL REFERENCES builders (id),
		priority INTEGER NOT NULL DEFAULT 0,
		head_rank INTEGER NOT NULL DEFAULT 0,
		submitted_at INTEGER NOT NULL,
		claimed_at INTEGER,
		complete SMALLINT NOT NULL DEFAULT 0,
		complete_at INTEGER,
		results SMALLINT
	)`,
	// CompleteRequest (the buildset's other requests), GetBuildset.
	`CREATE INDEX buildrequests_buildsetid ON buildrequests (buildsetid)`,
	// ListRequests by builder, newest first.
	`CREATE INDEX buildrequests_builderid ON buildrequests (builderid, id)`,
	// PendingRequests in queue order, and the head rank of UnclaimRequest.
	// Partial indexes (SQLite and PostgreSQL both have them) hold only the
	// few live rows, however long the history.
	`CREATE INDEX buildrequests_queue ON buildrequests (priority DESC, head_rank DESC, submitted_at, id)
		WHERE complete = 0 AND claimed_at IS NULL`,
	// ListRequests{PendingOnly}, newest first.
	`CREATE INDEX buildrequests_pending ON buildrequests (id)
		WHERE complete = 0 AND claimed_at IS NULL`,
	// Recover: claimed requests that never completed.
	`CREATE INDEX buildrequests_claimed ON buildrequests (id)
		WHERE complete = 0 AND claimed_at IS NOT NULL`,

	`CREATE TABLE builds (
		id INTEGER PRIMARY KEY,
		number INTEGER NOT NULL,
		builderid INTEGER NOT NULL REFERENCES builders (id),
		buildrequestid INTEGER REFERENCES buildrequests (id),
		workerid INTEGER REFERENCES workers (id),
		started_at INTEGER NOT NULL,
		complete_at INTEGER,
		state_string TEXT NOT NULL DEFAULT '',
		results SMALLINT
	)`,
	// GetBuildByNumber, and MAX(number) in AddBuild.
	`CREATE UNIQUE INDEX builds_number ON builds (builderid, number)`,
	// ListBuilds by builder / worker / request, newest first.
	`CREATE INDEX builds_builderid ON builds (builderid, id)`,
	`CREATE INDEX builds_workerid ON builds (workerid, id)`,
	`CREATE INDEX builds_buildrequestid ON builds (buildrequestid, id)`,
	// ListBuilds{RunningOnly}, Recover. Carrying builderid and workerid
	// lets ListBuilds filter the running builds without reading their rows.
	`CREATE INDEX builds_running ON builds (id, builderid, workerid) WHERE complete_at IS NULL`,
	`CREATE TABLE build_properties (
		buildid INTEGER NOT NULL REFERENCES builds (id),
		name TEXT NOT NULL,
		value TEXT NOT NULL,
		source TEXT NOT NULL DEFAULT '',
		PRIMARY KEY (buildid, name)
	)`,

	`CREATE TABLE steps (
		id INTEGER PRIMARY KEY,
		number INTEGER NOT NULL,
		name TEXT NOT NULL,
		buildid INTEGER NOT NULL REFERENCES builds (id),
		started_at INTEGER,
		complete_at INTEGER,
		state_string TEXT NOT NULL DEFAULT '',
		results SMALLINT,
		hidden SMALLINT NOT NULL DEFAULT 0
	)`,
	// ListSteps; step numbers and names are unique within a build.
	`CREATE UNIQUE INDEX steps_number ON steps (buildid, number)`,
	`CREATE UNIQUE INDEX steps_name ON steps (buildid, name)`,
	// Recover.
	`CREATE INDEX steps_running ON steps (id) WHERE complete_at IS NULL`,

	`CREATE TABLE logs (
		id INTEGER PRIMARY KEY,
		name TEXT NOT NULL,
		slug TEXT NOT NULL,
		stepid INTEGER NOT NULL REFERENCES steps (id),
		complete SMALLINT NOT NULL DEFAULT 0,
		num_lines INTEGER NOT NULL DEFAULT 0,
		size INTEGER NOT NULL DEFAULT 0,
		type TEXT NOT NULL
	)`,
	// ListLogs; slugs are unique within a step.
	`CREATE UNIQUE INDEX logs_slug ON logs (stepid, slug)`,
	// Recover.
	`CREATE INDEX logs_open ON logs (id) WHERE complete = 0`,

	// Lines first_line..last_line (0-based, inclusive) of a log, each
	// ending in "\n". Chunks of a log are contiguous and never overlap.
	`CREATE TABLE logchunks (
		logid INTEGER NOT NULL REFERENCES logs (id),
		first_line INTEGER NOT NULL,
		last_line INTEGER NOT NULL,
		content BLOB NOT NULL
	)`,
	// ReadLog.
	`CREATE UNIQUE INDEX logchunks_first_line ON logchunks (logid, first_line)`,

	// Schema only for now.
	`CREATE TABLE artifacts (
		id INTEGER PRIMARY KEY,
		buildid INTEGER NOT NULL REFERENCES builds (id),
		name TEXT NOT NULL,
		sha256 TEXT NOT NULL,
		size INTEGER NOT NULL,
		created_at INTEGER NOT NULL
	)`,
	`CREATE INDEX artifacts_buildid ON artifacts (buildid, name)`,

	// Schema only for now.
	`CREATE TABLE users (
		id INTEGER PRIMARY KEY,
		identifier TEXT NOT NULL,
		username TEXT,
		password_hash TEXT,
		info TEXT NOT NULL DEFAULT '{}',
		created_at INTEGER NOT NULL
	)`,
	`CREATE UNIQUE INDEX users_identifier ON users (identifier)`,
	`CREATE UNIQUE INDEX users_username ON users (username)`,
}

// schemaV3 is what commit-triggered builds need.
var schemaV3 = []string{
	// GetState, ObjectState, SetState. Objects are named by kind and name,
	// such as "poller:https://…" or "scheduler:nightly".
	`CREATE TABLE object_state (
		object TEXT NOT NULL,
		name TEXT NOT NULL,
		value TEXT NOT NULL,
		PRIMARY KEY (object, name)
	)`,
	// Changes a scheduler classified and has not built yet (Buildbot's
	// scheduler_changes, by scheduler name rather than object id).
	`CREATE TABLE scheduler_changes (
		scheduler TEXT NOT NULL,
		changeid INTEGER NOT NULL REFERENCES changes (id),
		important SMALLINT NOT NULL,
		PRIMARY KEY (scheduler, changeid)
	)`,
	// The changes a buildset builds: BuildsetChanges.
	`CREATE TABLE buildset_changes (
		buildsetid INTEGER NOT NULL REFERENCES buildsets (id),
		changeid INTEGER NOT NULL REFERENCES changes (id),
		PRIMARY KEY (buildsetid, changeid)
	)`,
	// Foreign key lookups, and the builds of a change.
	`CREATE INDEX buildset_changes_changeid ON buildset_changes (changeid)`,
	`ALTER TABLE buildsets ADD COLUMN parent_buildid INTEGER REFERENCES builds (id)`,
	`ALTER TABLE buildsets ADD COLUMN parent_relationship TEXT NOT NULL DEFAULT ''`,
	// ChildBuildsets.
	`CREATE INDEX buildsets_parent_buildid ON buildsets (parent_buildid) WHERE parent_buildid IS NOT NULL`,
	`CREATE TABLE patches (
		id INTEGER PRIMARY KEY,
		patchlevel INTEGER NOT NULL,
		patch BLOB NOT NULL,
		author TEXT NOT NULL DEFAULT '',
		comment TEXT NOT NULL DEFAULT '',
		subdir TEXT NOT NULL DEFAULT ''
	)`,
	`ALTER TABLE sourcestamps ADD COLUMN patchid INTEGER REFERENCES patches (id)`,
}

// schemaV4 is what artifacts and the stats page need.
var schemaV4 = []string{
	// Where the master keeps the artifact (relative to the basedir, or
	// absolute outside it), the step that uploaded it, and the file's size
	// and modification time then, so a file replaced later is noticed.
	`ALTER TABLE artifacts ADD COLUMN path TEXT NOT NULL DEFAULT ''`,
	`ALTER TABLE artifacts ADD COLUMN stepid INTEGER REFERENCES steps (id)`,
	`ALTER TABLE artifacts ADD COLUMN mtime INTEGER`,
	// BuilderStats: a builder's builds by start time, covering what the
	// statistics read so they never touch the table.
	`CREATE INDEX builds_started ON builds (builderid, started_at, complete_at, results)`,
	// BuilderStats: the wait times of claimed requests, by claim time (a
	// request's wait ends when a build claims it).
	`CREATE INDEX buildrequests_claimed_at ON buildrequests (builderid, claimed_at, submitted_at)
		WHERE claimed_at IS NOT NULL`,
}

// schemaV5 is what package jobs and the content-addressed artifact store
// need.
var schemaV5 = []string{
	// AddJob, GetJob, ListJobs. spec is the job's metadata as package job
	// validated it (JSON); dir holds its files, relative to the basedir.
	`CREATE TABLE jobs (
		id INTEGER PRIMARY KEY,
		farm TEXT NOT NULL,
		name TEXT NOT NULL,
		submitter TEXT NOT NULL DEFAULT '',
		spec TEXT NOT NULL,
		dir TEXT NOT NULL,
		state TEXT NOT NULL,
		summary TEXT NOT NULL DEFAULT '',
		submitted_at INTEGER NOT NULL,
		complete_at INTEGER
	)`,
	// ActiveJobs.
	`CREATE INDEX jobs_active ON jobs (id) WHERE complete_at IS NULL`,
	// One row per platform a job builds on, fixed when it is accepted.
	`CREATE TABLE job_platforms (
		jobid INTEGER NOT NULL REFERENCES jobs (id),
		platform TEXT NOT NULL,
		builderid INTEGER NOT NULL REFERENCES builders (id),
		state TEXT NOT NULL,
		summary TEXT NOT NULL DEFAULT '',
		PRIMARY KEY (jobid, platform)
	)`,
	// The buildsets of a job, in the order they were made on each platform;
	// the primary key makes each step of a platform's chain happen once.
	`CREATE TABLE job_builds (
		jobid INTEGER NOT NULL REFERENCES jobs (id),
		platform TEXT NOT NULL,
		seq INTEGER NOT NULL,
		package INTEGER NOT NULL,
		attempt INTEGER NOT NULL,
		buildsetid INTEGER NOT NULL REFERENCES buildsets (id),
		PRIMARY KEY (jobid, platform, seq)
	)`,
	// JobOfBuildset.
	`CREATE UNIQUE INDEX job_builds_buildsetid ON job_builds (buildsetid)`,
	// The artifact janitor: whether a stored blob is still referenced.
	`CREATE INDEX artifacts_sha256 ON artifacts (sha256)`,
}
