package store

import (
	"fmt"
	"strings"
	"testing"
)

// queryPlan returns SQLite's EXPLAIN QUERY PLAN for query, one line per step.
func queryPlan(t *testing.T, s *Store, query string, args ...any) string {
	t.Helper()
	rows, err := s.rdb.QueryContext(t.Context(), "EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var id, parent, notused int
		var detail string
		ok(t, rows.Scan(&id, &parent, &notused, &detail))
		lines = append(lines, detail)
	}
	ok(t, rows.Err())
	return strings.Join(lines, "\n")
}

// TestQueryPlans checks that the list and queue queries walk an index in
// the order they return rows (no sort, no full scan), so that their cost does
// not grow with the history. A regression here is what turns a 50 µs page
// into a 500 ms one at 100,000 builds.
func TestQueryPlans(t *testing.T) {
	s := newStore(t)
	tests := []struct {
		name  string
		query string
		args  []any
		index string // the plan must use this index for the main table (or one of a|b)
	}{
		{"pending queue", `SELECT ` + requestCols + ` WHERE br.complete = 0 AND br.claimed_at IS NULL
			ORDER BY br.priority DESC, br.head_rank DESC, br.submitted_at, br.id`, nil, "buildrequests_queue"},
		{"head rank", `SELECT COALESCE(MAX(head_rank), 0) FROM buildrequests
			WHERE complete = 0 AND claimed_at IS NULL AND priority = ?`, []any{1}, "buildrequests_queue"},
		{"buildset requests", `SELECT complete, results FROM buildrequests WHERE buildsetid = ?`, []any{1}, "buildrequests_buildsetid"},
		{"next build number", `SELECT COALESCE(MAX(number), 0) + 1 FROM builds WHERE builderid = ?`, []any{1}, "builds_number"},
		{"log start chunk", `SELECT MAX(first_line) FROM logchunks WHERE logid = ? AND first_line <= ?`, []any{1, 5}, "logchunks_first_line"},
		{"log chunks", `SELECT first_line, last_line, content FROM logchunks
			WHERE logid = ? AND first_line >= ? AND first_line <= ? ORDER BY first_line LIMIT ?`, []any{1, 1, 5, 16}, "logchunks_first_line"},
		{"recover logs", `UPDATE logs SET complete = 1 WHERE complete = 0`, nil, "logs_open"},
		{"recover steps", `UPDATE steps SET complete_at = 1 WHERE complete_at IS NULL`, nil, "steps_running"},
		{"recover builds", `UPDATE builds SET complete_at = 1 WHERE complete_at IS NULL`, nil, "builds_running"},
	}
	for _, f := range []RequestFilter{
		{}, {BuilderID: 1}, {PendingOnly: true}, {BuilderID: 1, PendingOnly: true},
	} {
		q, args := listRequestsQuery(f)
		index := "PRIMARY KEY"
		switch {
		case f.PendingOnly:
			index = "buildrequests_pending"
		case f.BuilderID != 0:
			index = "buildrequests_builderid"
		}
		tests = append(tests, struct {
			name, query string
			args        []any
			index       string
		}{fmt.Sprintf("ListRequests %+v", f), q, args, index})
	}
	for _, f := range []BuildFilter{
		{}, {BuilderID: 1}, {WorkerID: 1}, {RequestID: 1}, {RunningOnly: true},
		{BuilderID: 1, RunningOnly: true}, {WorkerID: 1, RunningOnly: true}, {BuilderID: 1, WorkerID: 1},
	} {
		q, args := listBuildsQuery(f)
		index := "PRIMARY KEY"
		switch {
		case f.RunningOnly:
			index = "builds_running"
		case f.BuilderID != 0 && f.WorkerID != 0:
			index = "builds_builderid|builds_workerid"
		case f.BuilderID != 0:
			index = "builds_builderid"
		case f.WorkerID != 0:
			index = "builds_workerid"
		case f.RequestID != 0:
			index = "builds_buildrequestid"
		}
		tests = append(tests, struct {
			name, query string
			args        []any
			index       string
		}{fmt.Sprintf("ListBuilds %+v", f), q, args, index})
	}
	for _, tt := range tests {
		plan := queryPlan(t, s, tt.query, tt.args...)
		uses := false
		for _, index := range strings.Split(tt.index, "|") {
			uses = uses || strings.Contains(plan, index)
		}
		if !uses || strings.Contains(plan, "TEMP B-TREE") {
			t.Errorf("%s: plan does not walk %s in order:\n%s", tt.name, tt.index, plan)
		}
		for _, line := range strings.Split(plan, "\n") {
			if strings.HasPrefix(line, "SCAN ") && !strings.Contains(line, "INDEX") {
				t.Errorf("%s: full scan: %s", tt.name, line)
			}
		}
	}
}
