package job

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/starforge/starforge/config"
	"github.com/starforge/starforge/master/store"
)

// PublishLog is the name of the file, in a job's directory, that holds the
// output of its publish step.
const PublishLog = "publish.log"

// defaultPublishTimeout bounds a publish_command() that gives no timeout.
const defaultPublishTimeout = 30 * time.Minute

// Publish runs the publish step p for job j, whose every platform in
// platforms succeeded: publish_copy() copies BASEDIR/JOBDIR/repo/PLATFORM/
// into DIR/PLATFORM/ for each platform; publish_command() runs its command
// on the master in BASEDIR/JOBDIR/repo. Either appends what it did to
// BASEDIR/JOBDIR/publish.log. A nil p publishes nothing.
//
// Publish may run more than once for a job (a master that stopped while
// publishing publishes again when it starts), so a publish step must be
// idempotent; copying is. It is safe for concurrent use on different jobs.
func Publish(ctx context.Context, basedir string, j store.Job, platforms []string, p *config.Publish) error {
	if p == nil {
		return nil
	}
	jobDir := filepath.Join(basedir, filepath.FromSlash(j.Dir))
	if err := os.MkdirAll(filepath.Join(jobDir, "repo"), 0o755); err != nil {
		return fmt.Errorf("job directory: %w", err)
	}
	logf, err := os.OpenFile(filepath.Join(jobDir, PublishLog), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open %s: %w", PublishLog, err)
	}
	defer logf.Close()
	fmt.Fprintf(logf, "== publish (%s) of job %d %q started at %s\n", p.Kind, j.ID, j.Name, time.Now().UTC().Format(time.RFC3339))
	switch p.Kind {
	case "copy":
		err = publishCopy(basedir, jobDir, platforms, p.Dir, logf)
	case "command":
		err = publishCommand(ctx, jobDir, j, platforms, p, logf)
	default:
		err = fmt.Errorf("unknown publish kind %q", p.Kind)
	}
	if err != nil {
		fmt.Fprintf(logf, "== publish failed: %v\n", err)
		return err
	}
	fmt.Fprintf(logf, "== publish succeeded\n")
	return logf.Close()
}

// publishCopy copies each platform's repository into dir/PLATFORM. Every
// file is written under a temporary name and renamed into place, so a
// reader of the published repository never sees half a file.
func publishCopy(basedir, jobDir string, platforms []string, dir string, log io.Writer) error {
	if dir == "" {
		return errors.New("publish_copy: no directory")
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(basedir, dir)
	}
	for _, plat := range platforms {
		src := filepath.Join(jobDir, "repo", plat)
		dst := filepath.Join(dir, plat)
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return fmt.Errorf("publish_copy: %w", err)
		}
		n := 0
		if _, err := os.Stat(src); !errors.Is(err, fs.ErrNotExist) { // else the platform uploaded nothing
			n, err = walkCopy(src, dst, func(src, dst string, _ fs.FileMode) error { return replaceFile(src, dst) })
			if err != nil {
				return fmt.Errorf("publish_copy %s: %w", plat, err)
			}
		}
		fmt.Fprintf(log, "copied %d files from repo/%s to %s\n", n, plat, dst)
	}
	return nil
}

// replaceFile copies src to dst through a temporary file in dst's directory,
// so a reader of dst sees the old file or the new one, never a part.
func replaceFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	tmp, err := os.CreateTemp(filepath.Dir(dst), "."+filepath.Base(dst)+".tmp-*")
	if err != nil {
		return err
	}
	_, err = io.Copy(tmp, in)
	if err == nil {
		err = tmp.Chmod(0o644)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), dst)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return nil
}

// publishCommand runs p's command in the job's repository directory with
// its output going to log.
func publishCommand(ctx context.Context, jobDir string, j store.Job, platforms []string, p *config.Publish, log io.Writer) error {
	if len(p.Command) == 0 {
		return errors.New("publish_command: no command")
	}
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = defaultPublishTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	repo := filepath.Join(jobDir, "repo")
	cmd := exec.CommandContext(ctx, p.Command[0], p.Command[1:]...)
	cmd.Dir = repo
	cmd.Stdout, cmd.Stderr = log, log
	cmd.WaitDelay = 10 * time.Second
	env := os.Environ()
	keys := make([]string, 0, len(p.Env))
	for k := range p.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		env = append(env, k+"="+p.Env[k])
	}
	cmd.Env = append(env,
		"STARFORGE_JOB_ID="+strconv.FormatInt(j.ID, 10),
		"STARFORGE_JOB_NAME="+j.Name,
		"STARFORGE_JOB_REPO="+repo,
		"STARFORGE_PLATFORMS="+strings.Join(platforms, " "),
	)
	err := cmd.Run()
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("publish_command %q: timed out after %v", p.Command[0], timeout)
	}
	if err != nil {
		return fmt.Errorf("publish_command %q: %w", p.Command[0], err)
	}
	return nil
}
