package cli

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"time"
)

// submitPollInterval is how often submit --wait asks about the job; a
// variable for the tests.
var submitPollInterval = time.Second

func runSubmit(ctx context.Context, args []string, out, errOut io.Writer) int {
	fs := newFlags("submit", "[--master URL] [--token T] [--wait] DIR", errOut)
	masterURL := fs.String("master", envOr("STARFORGE_URL", defaultMasterURL), "the master's web URL; env STARFORGE_URL")
	token := fs.String("token", "", "an API token of your user, for masters with logins (default: env STARFORGE_TOKEN)")
	wait := fs.Bool("wait", false, "follow the job, print each platform's progress, and exit non-zero unless it succeeded")
	fail := func(code int, format string, args ...any) int {
		fmt.Fprintf(errOut, "starforge submit: "+format+"\n", args...)
		return code
	}
	ordered, err := reorderFlags(args)
	if err != nil {
		fs.Usage()
		return fail(ExitUsage, "%v", err)
	}
	if code, ok := parse(fs, ordered); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return ExitUsage
	}
	dir := fs.Arg(0)
	files, err := jobFiles(dir)
	if err != nil {
		return fail(ExitUsage, "%v", err)
	}
	c, err := newClient(*masterURL)
	if err != nil {
		return fail(ExitUsage, "--master: %v", err)
	}
	c.token = *token
	c.tokenHint = "give --token, or set STARFORGE_TOKEN, to one of your API tokens"
	// An upload may take long: no overall deadline, unlike the API calls.
	upload := *c.http
	upload.Timeout = 0
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(writeJobTar(pw, dir, files)) }()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url("jobs"), pr)
	if err != nil {
		pr.Close()
		return fail(ExitProblem, "%v", err)
	}
	req.Header.Set("Content-Type", "application/gzip")
	if tok := c.authToken(); tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := upload.Do(req)
	pr.Close() // stops the writer if the master answered before reading it all
	if err != nil {
		var te *tarError
		if errors.As(err, &te) {
			return fail(ExitUsage, "%v", te.err)
		}
		return fail(ExitProblem, "cannot reach the master: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fail(ExitProblem, "read the master's answer: %v", err)
	}
	if resp.StatusCode == http.StatusBadRequest {
		var bad struct {
			Error    string   `json:"error"`
			Problems []string `json:"problems"`
		}
		if json.Unmarshal(body, &bad) == nil && len(bad.Problems) > 0 {
			fmt.Fprintf(errOut, "starforge submit: the master refused the job in %s:\n", dir)
			for _, p := range bad.Problems {
				fmt.Fprintln(errOut, p)
			}
			return ExitFailed
		}
	}
	if resp.StatusCode != http.StatusCreated {
		return fail(ExitProblem, "%v", c.answerError(req, resp, body))
	}
	var created struct {
		Jobs []submittedJob `json:"jobs"`
	}
	if err := json.Unmarshal(body, &created); err != nil || len(created.Jobs) != 1 {
		return fail(ExitProblem, "unexpected answer from the master: %.200s", body)
	}
	j := created.Jobs[0]
	fmt.Fprintf(out, "job %d accepted: %s\n", j.ID, c.pageURL(j.ID))
	if !*wait {
		return ExitOK
	}
	return c.followJob(ctx, j.ID, out, errOut)
}

type submittedJob struct {
	ID        int64  `json:"jobid"`
	Name      string `json:"name"`
	State     string `json:"state"`
	Summary   string `json:"summary"`
	Complete  bool   `json:"complete"`
	Platforms []struct {
		Name   string `json:"name"`
		State  string `json:"state"`
		Status string `json:"status"`
	} `json:"platforms"`
}

// pageURL is the web page of job id.
func (c *client) pageURL(id int64) string {
	return c.base.JoinPath("jobs", strconv.FormatInt(id, 10)).String()
}

// followJob polls job id until it is complete, printing each change of a
// platform's status and of the job's state. It returns ExitOK if the job
// succeeded, ExitFailed if it failed.
func (c *client) followJob(ctx context.Context, id int64, out, errOut io.Writer) int {
	seen := map[string]string{}
	state := ""
	tick := time.NewTicker(submitPollInterval)
	defer tick.Stop()
	for {
		var resp struct {
			Jobs []submittedJob `json:"jobs"`
		}
		if err := c.get(ctx, "jobs/"+strconv.FormatInt(id, 10), nil, &resp); err != nil {
			fmt.Fprintf(errOut, "starforge submit: following job %d: %v\n", id, err)
			return ExitProblem
		}
		if len(resp.Jobs) != 1 {
			fmt.Fprintf(errOut, "starforge submit: following job %d: the master did not return it\n", id)
			return ExitProblem
		}
		j := resp.Jobs[0]
		for _, p := range j.Platforms {
			if seen[p.Name] != p.Status {
				seen[p.Name] = p.Status
				fmt.Fprintf(out, "%s: %s\n", p.Name, p.Status)
			}
		}
		if j.State != state {
			state = j.State
			if !j.Complete {
				fmt.Fprintf(out, "job %d %s\n", id, j.State)
			}
		}
		if j.Complete {
			msg := fmt.Sprintf("job %d %s", id, j.State)
			if j.Summary != "" {
				msg += ": " + j.Summary
			}
			fmt.Fprintln(out, msg)
			if j.State == "succeeded" {
				return ExitOK
			}
			return ExitFailed
		}
		select {
		case <-ctx.Done():
			fmt.Fprintf(errOut, "starforge submit: stopped following job %d: %v\n", id, ctx.Err())
			return ExitProblem
		case <-tick.C:
		}
	}
}

// jobEntry is one file or directory of a job directory, by its path
// relative to it (with "/").
type jobEntry struct {
	rel string
	dir bool
}

// jobFiles lists dir for upload, refusing what a job may not hold:
// symbolic links and anything but regular files and directories.
func jobFiles(dir string) ([]jobEntry, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%s is not a directory: give the job's directory (the one holding job.json)", dir)
	}
	if _, err := os.Lstat(filepath.Join(dir, "job.json")); err != nil {
		return nil, fmt.Errorf("%s has no job.json: a job directory holds job.json and the package files", dir)
	}
	var out []jobEntry
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path == dir {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		switch t := d.Type(); {
		case t&fs.ModeSymlink != 0:
			return fmt.Errorf("%s is a symbolic link: a job may hold only regular files and directories (copy the file in instead)", path)
		case t.IsDir():
			out = append(out, jobEntry{rel: filepath.ToSlash(rel), dir: true})
		case t.IsRegular():
			out = append(out, jobEntry{rel: filepath.ToSlash(rel)})
		default:
			return fmt.Errorf("%s is not a regular file (%s): a job may hold only regular files and directories", path, t)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// tarError marks a failure to read the job directory while uploading it.
type tarError struct{ err error }

func (e *tarError) Error() string { return e.err.Error() }
func (e *tarError) Unwrap() error { return e.err }

// writeJobTar writes the files of dir as a tar.gz to w, job.json at the
// top.
func writeJobTar(w io.Writer, dir string, files []jobEntry) error {
	zw := gzip.NewWriter(w)
	tw := tar.NewWriter(zw)
	for _, f := range files {
		if err := addTarEntry(tw, dir, f); err != nil {
			return &tarError{err}
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return zw.Close()
}

func addTarEntry(tw *tar.Writer, dir string, e jobEntry) error {
	path := filepath.Join(dir, filepath.FromSlash(e.rel))
	if e.dir {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: e.rel + "/", Mode: 0o755})
	}
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is no longer a regular file", path)
	}
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: e.rel, Mode: int64(fi.Mode().Perm()), Size: fi.Size(), ModTime: fi.ModTime()}); err != nil {
		return err
	}
	if _, err := io.CopyN(tw, f, fi.Size()); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}
