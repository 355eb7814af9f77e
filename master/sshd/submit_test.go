package sshd

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/starforge/starforge/master/store"
)

type jobProblems []string

func (p jobProblems) Error() string      { return "invalid job: " + strings.Join(p, "; ") }
func (p jobProblems) Problems() []string { return p }

// fakeSubmit stands in for job.Accepter: it reads the tar (gzip-compressed
// or not) from r and stores a job named as its job.json says on builder
// proj; a job.json without a name is invalid.
func fakeSubmit(st *store.Store, calls *atomic.Int32) func(context.Context, io.Reader, string) (store.Job, error) {
	return func(ctx context.Context, r io.Reader, who string) (store.Job, error) {
		calls.Add(1)
		raw, err := io.ReadAll(r)
		if err != nil {
			return store.Job{}, fmt.Errorf("read the job: %w", err)
		}
		var in io.Reader = bytes.NewReader(raw)
		if bytes.HasPrefix(raw, []byte{0x1f, 0x8b}) {
			if in, err = gzip.NewReader(in); err != nil {
				return store.Job{}, jobProblems{"gzip: " + err.Error()}
			}
		}
		tr := tar.NewReader(in)
		var spec []byte
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				return store.Job{}, jobProblems{"tar: " + err.Error()}
			}
			if h.Name == "job.json" {
				spec, _ = io.ReadAll(tr)
			}
		}
		var s struct{ Name string }
		if spec == nil || json.Unmarshal(spec, &s) != nil || s.Name == "" {
			return store.Job{}, jobProblems{"job.json: name: missing", "job.json: packages: empty"}
		}
		b, err := st.GetBuilderByName(ctx, "proj")
		if err != nil {
			return store.Job{}, err
		}
		return st.AddJob(ctx, store.Job{Farm: "packages", Name: s.Name, Submitter: who, Spec: spec, Dir: "jobs/" + s.Name,
			Platforms: []store.JobPlatform{{Platform: "debian-12-amd64", BuilderID: b.ID}}})
	}
}

func makeTar(t *testing.T, gz bool, files map[string]string) string {
	t.Helper()
	var buf bytes.Buffer
	var w io.Writer = &buf
	zw := gzip.NewWriter(&buf)
	if gz {
		w = zw
	}
	tw := tar.NewWriter(w)
	for name, body := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(body)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(tw, body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if gz {
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return buf.String()
}

// TestSubmitOverSSH drives `ssh HOST submit < job.tar` with the OpenSSH
// client.
func TestSubmitOverSSH(t *testing.T) {
	dir := t.TempDir()
	alice, vic, lin := NewTestKey(t, dir, "alice"), NewTestKey(t, dir, "vic"), NewTestKey(t, dir, "lin")
	src := fmt.Sprintf(`
master(url = "https://ci.example.org/", upload_max_size = 8192)
worker("w1", "pw")
builder("proj", workers = ["w1"], steps = [shell("true")])
builder("other", workers = ["w1"], steps = [shell("true")])
role("proj-only", can = ["force"], builders = ["proj"])
user("alice", keys = [%q], roles = ["developer"])
user("vic", keys = [%q], roles = ["viewer"])
user("lin", keys = [%q], roles = ["viewer", "proj-only"])
`, alice.Pub, vic.Pub, lin.Pub)
	f := newFake(t, src)
	var calls atomic.Int32
	f.submit = fakeSubmit(f.st, &calls)
	addr, _ := startServer(t, f, Options{})
	c := NewTestClient(t, addr)

	jobs := func() []store.Job {
		t.Helper()
		js, err := f.st.ListJobs(context.Background(), store.JobQuery{})
		if err != nil {
			t.Fatal(err)
		}
		return js
	}
	spec := `{"name": "hello", "packages": ["hello"]}`
	for i, gz := range []bool{true, false} {
		out, errOut, code := c.Run("alice", alice, makeTar(t, gz, map[string]string{"job.json": spec, "hello/hello.dsc": "x"}), "submit")
		want := fmt.Sprintf("job %d accepted: https://ci.example.org/jobs/%d\n", i+1, i+1)
		if code != ExitOK || out != want {
			t.Fatalf("gz=%v: exit %d, stdout %q (want %q), stderr %q", gz, code, out, want, errOut)
		}
	}
	if js := jobs(); len(js) != 2 || js[0].Submitter != "alice" || js[0].Name != "hello" {
		t.Fatalf("jobs %+v", js)
	}

	out, errOut, code := c.Run("alice", alice, makeTar(t, true, map[string]string{"job.json": `{"packages": []}`}), "submit")
	wantErr := "starforge submit: the job is invalid; nothing was stored:\njob.json: name: missing\njob.json: packages: empty\n"
	if code != ExitFailed || out != "" || errOut != wantErr {
		t.Errorf("invalid job: exit %d, stdout %q, stderr %q; want 1 and %q", code, out, errOut, wantErr)
	}

	big := makeTar(t, false, map[string]string{"job.json": spec, "big": strings.Repeat("x", 9000)})
	_, errOut, code = c.Run("alice", alice, big, "submit")
	if code != ExitRefused || !strings.Contains(errOut, "upload_max_size 8192") {
		t.Errorf("too large: exit %d, stderr %q", code, errOut)
	}
	_, errOut, code = c.Run("alice", alice, "", "submit")
	if code != ExitUsage || !strings.Contains(errOut, "no job on standard input") {
		t.Errorf("empty stdin: exit %d, stderr %q", code, errOut)
	}
	_, errOut, code = c.Run("alice", alice, "", "submit", "extra")
	if code != ExitUsage || !strings.Contains(errOut, "too many arguments") {
		t.Errorf("an argument: exit %d, stderr %q", code, errOut)
	}
	if js := jobs(); len(js) != 2 {
		t.Errorf("%d jobs stored, want still 2", len(js))
	}

	before := calls.Load()
	for _, u := range []struct {
		name string
		key  TestKey
	}{{"vic", vic}, {"lin", lin}} {
		_, errOut, code := c.Run(u.name, u.key, makeTar(t, true, map[string]string{"job.json": spec}), "submit")
		if code != ExitRefused || !strings.Contains(errOut, "not allowed") {
			t.Errorf("%s: exit %d, stderr %q; want refused", u.name, code, errOut)
		}
	}
	if calls.Load() != before || len(jobs()) != 2 {
		t.Errorf("refused users reached the submitter")
	}
}

func TestLimitedInput(t *testing.T) {
	for _, tt := range []struct {
		in      string
		max     int64
		wantErr bool
	}{
		{"12345", 5, false}, {"123456", 5, true}, {"123456", 0, false}, {"", 5, false},
	} {
		l := &limitedInput{r: strings.NewReader(tt.in), max: tt.max}
		b, err := io.ReadAll(l)
		if (err != nil) != tt.wantErr || (err == nil && string(b) != tt.in) {
			t.Errorf("%q max %d: %q, %v", tt.in, tt.max, b, err)
		}
	}
}
