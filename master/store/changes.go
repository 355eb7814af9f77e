package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/starforge/starforge/master/result"
)

// Change is one change to the source code: a commit a poller saw, a push a
// webhook reported, or one sent with `starforge sendchange`. Changes are
// never modified once stored.
type Change struct {
	ID                          int64
	Author, Committer, Comments string
	Branch, Revision, Revlink   string
	When                        time.Time // when the change was made (the commit's time); zero: now
	Category                    string
	Repository, Codebase        string
	Project                     string
	Files                       []string            // never nil when read
	Properties                  map[string]Property // never nil when read
	SourceStampID               int64               // set by AddChanges; ignored on input
}

// StateValue is one named value of an object's state (a poller's last
// seen revisions, a scheduler's pending timer, the last nightly run),
// stored as JSON. A nil Value deletes the name.
type StateValue struct {
	Object, Name string
	Value        any
}

// SchedulerChange is a change a scheduler has classified and not yet built.
type SchedulerChange struct {
	ChangeID  int64
	Important bool
}

// Patch is a patch a build applies to its source tree after checking it
// out (a try build).
type Patch struct {
	ID      int64
	Level   int    // as patch -p
	Body    []byte // a unified diff
	Author  string
	Comment string
	Subdir  string // relative to the checkout, where the patch applies
}

// NewBuildsetID, in the Name of a value of NewBuildset.State, stands for
// the id of the buildset AddBuildset adds, so that state that names the
// new buildset (a dependent scheduler's record that it waits for it) is
// stored in the transaction that adds it. Other writes refuse it.
const NewBuildsetID = "{buildset}"

type encodedState struct {
	object, name, value string
	newBuildset         bool // name holds NewBuildsetID
}

// encodeState encodes vals for AddBuildset, which resolves NewBuildsetID.
func encodeState(vals []StateValue) ([]encodedState, error) {
	out := make([]encodedState, len(vals))
	for i, v := range vals {
		if v.Object == "" || v.Name == "" {
			return nil, fmt.Errorf("state value with an empty object or name (%q, %q)", v.Object, v.Name)
		}
		out[i] = encodedState{object: v.Object, name: v.Name, newBuildset: strings.Contains(v.Name, NewBuildsetID)}
		if v.Value == nil {
			continue
		}
		b, err := json.Marshal(v.Value)
		if err != nil {
			return nil, fmt.Errorf("state %s/%s: %w", v.Object, v.Name, err)
		}
		out[i].value = string(b)
	}
	return out, nil
}

// encodePlainState encodes vals for the writes that add no buildset.
func encodePlainState(vals []StateValue) ([]encodedState, error) {
	enc, err := encodeState(vals)
	if err != nil {
		return nil, err
	}
	for _, v := range enc {
		if v.newBuildset {
			return nil, fmt.Errorf("state %s/%s: %s names a new buildset, and this write adds none", v.object, v.name, NewBuildsetID)
		}
	}
	return enc, nil
}

func (t *wtx) setState(vals []encodedState) error {
	for _, v := range vals {
		var err error
		if v.newBuildset {
			// Only AddBuildset's transaction gets here, after it added
			// the buildset: the writer is alone, so that is the highest id.
			var id int64
			if err := t.queryRow(`SELECT MAX(id) FROM buildsets`).Scan(&id); err != nil {
				return fmt.Errorf("state %s/%s: the new buildset's id: %w", v.object, v.name, err)
			}
			v.name = strings.ReplaceAll(v.name, NewBuildsetID, strconv.FormatInt(id, 10))
		}
		if v.value == "" {
			_, err = t.exec(`DELETE FROM object_state WHERE object = ? AND name = ?`, v.object, v.name)
		} else {
			_, err = t.exec(`INSERT INTO object_state (object, name, value) VALUES (?, ?, ?)
				ON CONFLICT (object, name) DO UPDATE SET value = excluded.value`, v.object, v.name, v.value)
		}
		if err != nil {
			return fmt.Errorf("state %s/%s: %w", v.object, v.name, err)
		}
	}
	return nil
}

// SetState stores vals in one transaction.
func (s *Store) SetState(ctx context.Context, vals ...StateValue) error {
	enc, err := encodePlainState(vals)
	if err != nil {
		return fmt.Errorf("store: set state: %w", err)
	}
	if err := s.write(ctx, 0, func(tx *wtx) error { return tx.setState(enc) }); err != nil {
		return fmt.Errorf("store: set state: %w", err)
	}
	return nil
}

// GetState decodes object's value called name into v. It reports false,
// leaving v alone, if there is none.
func (s *Store) GetState(ctx context.Context, object, name string, v any) (bool, error) {
	var text string
	err := s.queryRow(ctx, `SELECT value FROM object_state WHERE object = ? AND name = ?`, object, name).Scan(&text)
	if err == sql.ErrNoRows {
		return false, nil
	}
	if err == nil {
		err = json.Unmarshal([]byte(text), v)
	}
	if err != nil {
		return false, fmt.Errorf("store: state %s/%s: %w", object, name, err)
	}
	return true, nil
}

// ObjectState returns every value of object's state, by name, as JSON.
func (s *Store) ObjectState(ctx context.Context, object string) (map[string]json.RawMessage, error) {
	rows, err := s.query(ctx, `SELECT name, value FROM object_state WHERE object = ?`, object)
	if err != nil {
		return nil, fmt.Errorf("store: state of %s: %w", object, err)
	}
	defer rows.Close()
	out := map[string]json.RawMessage{}
	for rows.Next() {
		var name, value string
		if err := rows.Scan(&name, &value); err != nil {
			return nil, fmt.Errorf("store: state of %s: %w", object, err)
		}
		out[name] = json.RawMessage(value)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: state of %s: %w", object, err)
	}
	return out, nil
}

// encodedChange is a change ready for its row.
type encodedChange struct {
	c      Change
	files  string
	props  string
	when   int64
	ssHash string
}

// AddChanges stores cs, in order, and state, in one transaction, so that a
// change source's record of what it has seen moves together with the
// changes it produced: after a crash either both are stored or neither.
// It returns the changes with their IDs and source stamps set.
func (s *Store) AddChanges(ctx context.Context, cs []Change, state ...StateValue) ([]Change, error) {
	encState, err := encodePlainState(state)
	if err != nil {
		return nil, fmt.Errorf("store: add changes: %w", err)
	}
	enc := make([]encodedChange, len(cs))
	now := time.Now()
	for i, c := range cs {
		e := encodedChange{c: c}
		if e.c.When.IsZero() {
			e.c.When = now
		}
		e.when = e.c.When.UnixMicro()
		e.c.When = time.UnixMicro(e.when).UTC()
		if e.files, err = encodeJSON(c.Files, "[]"); err != nil {
			return nil, fmt.Errorf("store: add changes: files: %w", err)
		}
		props, err := encodeProps(c.Properties)
		if err != nil {
			return nil, fmt.Errorf("store: add changes: %w", err)
		}
		pm := make(map[string]json.RawMessage, len(props))
		for _, p := range props {
			pm[p.name] = json.RawMessage(fmt.Sprintf(`[%s, %q]`, p.value, p.source))
		}
		b, err := json.Marshal(pm)
		if err != nil {
			return nil, fmt.Errorf("store: add changes: properties: %w", err)
		}
		e.props = string(b)
		e.c.Files = append([]string{}, c.Files...)
		if e.c.Properties, err = decodeProps(props); err != nil {
			return nil, fmt.Errorf("store: add changes: %w", err)
		}
		e.ssHash = ssHash(SourceStamp{Codebase: c.Codebase, Repository: c.Repository, Branch: c.Branch, Revision: c.Revision, Project: c.Project})
		enc[i] = e
	}
	out := make([]Change, len(cs))
	err = s.write(ctx, len(cs)*256, func(tx *wtx) error {
		for i, e := range enc {
			c := e.c
			ssid, err := tx.sourceStamp(e.ssHash, SourceStamp{Codebase: c.Codebase, Repository: c.Repository,
				Branch: c.Branch, Revision: c.Revision, Project: c.Project}, e.when)
			if err != nil {
				return fmt.Errorf("change %d: %w", i, err)
			}
			c.SourceStampID = ssid
			if err := tx.queryRow(`INSERT INTO changes (author, committer, comments, branch, revision, revlink,
				when_timestamp, category, repository, codebase, project, files, properties, sourcestampid)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
				c.Author, c.Committer, c.Comments, c.Branch, c.Revision, c.Revlink, e.when, c.Category,
				c.Repository, c.Codebase, c.Project, e.files, e.props, ssid).Scan(&c.ID); err != nil {
				return fmt.Errorf("change %d: %w", i, err)
			}
			out[i] = c
		}
		return tx.setState(encState)
	})
	if err != nil {
		return nil, fmt.Errorf("store: add changes: %w", err)
	}
	return out, nil
}

// sourceStamp returns the id of the stamp with hash h, adding ss if there
// is none.
func (t *wtx) sourceStamp(h string, ss SourceStamp, at int64) (int64, error) {
	var id int64
	err := t.queryRow(`SELECT id FROM sourcestamps WHERE ss_hash = ?`, h).Scan(&id)
	if err == sql.ErrNoRows {
		var patchID any
		if ss.Patch != nil {
			patchID = ss.Patch.ID
		}
		err = t.queryRow(`INSERT INTO sourcestamps (ss_hash, codebase, repository, branch, revision, project, patchid, created_at)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
			h, ss.Codebase, ss.Repository, ss.Branch, ss.Revision, ss.Project, patchID, at).Scan(&id)
	}
	return id, err
}

const changeCols = `id, author, committer, comments, branch, revision, revlink, when_timestamp, category,
	repository, codebase, project, files, properties, sourcestampid FROM changes`

func scanChange(r rowScanner) (Change, error) {
	var c Change
	var when int64
	var files, props string
	if err := r.Scan(&c.ID, &c.Author, &c.Committer, &c.Comments, &c.Branch, &c.Revision, &c.Revlink, &when,
		&c.Category, &c.Repository, &c.Codebase, &c.Project, &files, &props, &c.SourceStampID); err != nil {
		return Change{}, err
	}
	c.When = time.UnixMicro(when).UTC()
	if err := json.Unmarshal([]byte(files), &c.Files); err != nil {
		return Change{}, fmt.Errorf("change %d files: %w", c.ID, err)
	}
	var pm map[string][2]json.RawMessage
	if err := json.Unmarshal([]byte(props), &pm); err != nil {
		return Change{}, fmt.Errorf("change %d properties: %w", c.ID, err)
	}
	if c.Files == nil {
		c.Files = []string{}
	}
	c.Properties = map[string]Property{}
	if len(pm) > 0 {
		eps := make([]encodedProp, 0, len(pm))
		for name, vs := range pm {
			var source string
			if err := json.Unmarshal(vs[1], &source); err != nil {
				return Change{}, fmt.Errorf("change %d property %q: %w", c.ID, name, err)
			}
			eps = append(eps, encodedProp{name, string(vs[0]), source})
		}
		var err error
		if c.Properties, err = decodeProps(eps); err != nil {
			return Change{}, fmt.Errorf("change %d: %w", c.ID, err)
		}
	}
	return c, nil
}

func (s *Store) listChanges(ctx context.Context, query string, args ...any) ([]Change, error) {
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var cs []Change
	for rows.Next() {
		c, err := scanChange(rows)
		if err != nil {
			return nil, err
		}
		cs = append(cs, c)
	}
	return cs, rows.Err()
}

// GetChange returns the change with the given id.
func (s *Store) GetChange(ctx context.Context, id int64) (Change, error) {
	c, err := scanChange(s.queryRow(ctx, `SELECT `+changeCols+` WHERE id = ?`, id))
	if err != nil {
		return Change{}, fmt.Errorf("store: get change %d: %w", id, notFound(err))
	}
	return c, nil
}

// ChangeFilter selects changes for ListChanges.
type ChangeFilter struct {
	Before int64 // keyset pagination: only ids < Before; 0: no bound
	Limit  int   // 0: 100; at most 1000
}

// ListChanges returns one page of changes, newest (highest id) first.
func (s *Store) ListChanges(ctx context.Context, f ChangeFilter) ([]Change, error) {
	cs, err := s.listChanges(ctx, `SELECT `+changeCols+` WHERE id < ? ORDER BY id DESC LIMIT ?`,
		beforeArg(f.Before), pageLimit(f.Limit))
	if err != nil {
		return nil, fmt.Errorf("store: list changes: %w", err)
	}
	return cs, nil
}

// ChangesAfter returns up to limit changes with ids above after, oldest
// first: what a scheduler has not seen yet.
func (s *Store) ChangesAfter(ctx context.Context, after int64, limit int) ([]Change, error) {
	cs, err := s.listChanges(ctx, `SELECT `+changeCols+` WHERE id > ? ORDER BY id LIMIT ?`, after, pageLimit(limit))
	if err != nil {
		return nil, fmt.Errorf("store: changes after %d: %w", after, err)
	}
	return cs, nil
}

// LastChangeID returns the highest change id, 0 if there are none.
func (s *Store) LastChangeID(ctx context.Context) (int64, error) {
	var id sql.NullInt64
	if err := s.queryRow(ctx, `SELECT MAX(id) FROM changes`).Scan(&id); err != nil {
		return 0, fmt.Errorf("store: last change id: %w", err)
	}
	return id.Int64, nil
}

// BuildsetChanges returns the changes buildset bsid builds, oldest first.
func (s *Store) BuildsetChanges(ctx context.Context, bsid int64) ([]Change, error) {
	cs, err := s.listChanges(ctx, `SELECT `+strings.ReplaceAll(changeCols, "FROM changes",
		"FROM changes WHERE id IN (SELECT changeid FROM buildset_changes WHERE buildsetid = ?)")+` ORDER BY id`, bsid)
	if err != nil {
		return nil, fmt.Errorf("store: changes of buildset %d: %w", bsid, err)
	}
	return cs, nil
}

// ClassifyChanges records, in one transaction with state (typically the
// scheduler's watermark: the last change it looked at), the changes
// scheduler keeps for its next buildset. Recording a change twice is a
// no-op.
func (s *Store) ClassifyChanges(ctx context.Context, scheduler string, cs []SchedulerChange, state ...StateValue) error {
	enc, err := encodePlainState(state)
	if err != nil {
		return fmt.Errorf("store: classify changes: %w", err)
	}
	err = s.write(ctx, 0, func(tx *wtx) error {
		for _, c := range cs {
			if _, err := tx.exec(`INSERT INTO scheduler_changes (scheduler, changeid, important) VALUES (?, ?, ?)
				ON CONFLICT DO NOTHING`, scheduler, c.ChangeID, boolArg(c.Important)); err != nil {
				return fmt.Errorf("change %d: %w", c.ChangeID, err)
			}
		}
		return tx.setState(enc)
	})
	if err != nil {
		return fmt.Errorf("store: classify changes for %s: %w", scheduler, err)
	}
	return nil
}

// SchedulerChanges returns the changes scheduler has classified and not
// yet consumed, oldest first.
func (s *Store) SchedulerChanges(ctx context.Context, scheduler string) ([]SchedulerChange, error) {
	rows, err := s.query(ctx, `SELECT changeid, important FROM scheduler_changes WHERE scheduler = ? ORDER BY changeid`, scheduler)
	if err != nil {
		return nil, fmt.Errorf("store: changes of scheduler %s: %w", scheduler, err)
	}
	defer rows.Close()
	var out []SchedulerChange
	for rows.Next() {
		var c SchedulerChange
		if err := rows.Scan(&c.ChangeID, &c.Important); err != nil {
			return nil, fmt.Errorf("store: changes of scheduler %s: %w", scheduler, err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// ForgetSchedulerChanges drops changes scheduler had classified, with
// state, in one transaction (a change that turned out unimportant, a
// scheduler removed from the configuration: nil ids drops them all).
func (s *Store) ForgetSchedulerChanges(ctx context.Context, scheduler string, ids []int64, state ...StateValue) error {
	enc, err := encodePlainState(state)
	if err != nil {
		return fmt.Errorf("store: forget changes: %w", err)
	}
	err = s.write(ctx, 0, func(tx *wtx) error {
		if err := tx.forgetSchedulerChanges(scheduler, ids); err != nil {
			return err
		}
		return tx.setState(enc)
	})
	if err != nil {
		return fmt.Errorf("store: forget changes of %s: %w", scheduler, err)
	}
	return nil
}

func (t *wtx) forgetSchedulerChanges(scheduler string, ids []int64) error {
	if ids == nil {
		_, err := t.exec(`DELETE FROM scheduler_changes WHERE scheduler = ?`, scheduler)
		return err
	}
	for _, id := range ids {
		if _, err := t.exec(`DELETE FROM scheduler_changes WHERE scheduler = ? AND changeid = ?`, scheduler, id); err != nil {
			return err
		}
	}
	return nil
}

// ChildBuildsets returns the buildsets a build triggered, oldest first.
func (s *Store) ChildBuildsets(ctx context.Context, parentBuildID int64) ([]Buildset, error) {
	return s.buildsets(ctx, `SELECT id FROM buildsets WHERE parent_buildid = ? ORDER BY id`, parentBuildID)
}

// OnBuildsetComplete sets fn to be called, after the commit, each time a
// buildset completes (its last request completed, was cancelled or
// collapsed), with the buildset's id and worst result. fn runs in the
// goroutine of the store call that completed it and must not block. Set it
// before the store is used; it is not safe to change concurrently.
func (s *Store) OnBuildsetComplete(fn func(id int64, results result.Result)) { s.bsHook = fn }

func (s *Store) buildsetDone(d bsDone) {
	if d.complete && s.bsHook != nil {
		s.bsHook(d.id, d.results)
	}
}

// BuildsetFilter selects buildsets for ListBuildsets.
type BuildsetFilter struct {
	Before int64 // keyset pagination: only ids < Before; 0: no bound
	Limit  int   // 0: 100; at most 1000
}

// ListBuildsets returns one page of buildsets, newest first, each as
// GetBuildset returns it.
func (s *Store) ListBuildsets(ctx context.Context, f BuildsetFilter) ([]Buildset, error) {
	return s.buildsets(ctx, `SELECT id FROM buildsets WHERE id < ? ORDER BY id DESC LIMIT ?`, beforeArg(f.Before), pageLimit(f.Limit))
}

// buildsets reads the buildsets whose ids query returns, in its order.
func (s *Store) buildsets(ctx context.Context, query string, args ...any) ([]Buildset, error) {
	rows, err := s.query(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list buildsets: %w", err)
	}
	var ids []int64
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: list buildsets: %w", err)
		}
		ids = append(ids, id)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list buildsets: %w", err)
	}
	out := make([]Buildset, 0, len(ids))
	for _, id := range ids {
		bs, err := s.GetBuildset(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, bs)
	}
	return out, nil
}
