package sshd

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
)

var submitCmd = &command{
	name: "submit", synopsis: "< JOB.tar",
	summary: "submit a package job: a tar or tar.gz of its directory on standard input",
	perm:    "force", maxArgs: 0,
	detail: `Reads a tar (optionally gzip-compressed) of a job directory, job.json at
its top, from standard input. The job is stored before the answer:
"job N accepted: URL". An invalid job is not stored; each problem is
printed on a line of its own and the exit code is 1. Submitting needs the
force permission on every builder.

  tar -C hello-job -czf - . | ssh -p 2222 ci.example.org submit`,
	define: func(fs *flag.FlagSet) func(*cmdCtx, []string) int {
		return func(c *cmdCtx, _ []string) int {
			if !c.cfg.Allowed(c.user, "force") {
				return c.errorf(ExitRefused, "not allowed: submit needs the \"force\" permission on every builder, which none of %s's roles grants", c.user)
			}
			if cl, ok := c.in.(io.Closer); ok {
				// Submit reads standard input: a client that never closes it
				// must not hold the session once the master stops.
				defer context.AfterFunc(c.ctx, func() { cl.Close() })()
			}
			in := &limitedInput{r: c.in, max: c.cfg.Master.UploadMaxSize}
			j, err := c.b.SubmitJob(c.ctx, in, c.user)
			var pe interface{ Problems() []string }
			switch {
			case err == nil:
			case errors.Is(err, errJobTooLarge):
				return c.errorf(ExitRefused, "the job is larger than the master accepts (upload_max_size %d bytes); nothing was stored", in.max)
			case errors.As(err, &pe) && in.n == 0:
				return c.errorf(ExitUsage, "no job on standard input: pipe a tar of the job directory in, as in  tar -C DIR -czf - . | ssh HOST submit")
			case errors.As(err, &pe):
				fmt.Fprintf(c.errOut, "starforge submit: the job is invalid; nothing was stored:\n")
				for _, p := range pe.Problems() {
					fmt.Fprintln(c.errOut, p)
				}
				return ExitFailed
			default:
				return c.fail(err)
			}
			fmt.Fprintf(c.out, "job %d accepted: %s\n", j.ID, jobURL(c.cfg.Master.URL, j.ID))
			return ExitOK
		}
	},
}

// jobURL is the web page of job id under the master's URL.
func jobURL(base string, id int64) string {
	if base == "" {
		return "/jobs/" + strconv.FormatInt(id, 10)
	}
	return strings.TrimSuffix(base, "/") + "/jobs/" + strconv.FormatInt(id, 10)
}

var errJobTooLarge = errors.New("the job is larger than upload_max_size")

// limitedInput reads standard input up to max bytes (0: no cap) and fails
// with errJobTooLarge beyond, counting what it read.
type limitedInput struct {
	r   io.Reader
	max int64
	n   int64
}

func (l *limitedInput) Read(p []byte) (int, error) {
	if l.max > 0 {
		if l.n >= l.max {
			// One byte more says whether the input ends exactly at max.
			var one [1]byte
			n, err := l.r.Read(one[:])
			if n > 0 {
				return 0, errJobTooLarge
			}
			return 0, err
		}
		if int64(len(p)) > l.max-l.n {
			p = p[:l.max-l.n]
		}
	}
	n, err := l.r.Read(p)
	l.n += int64(n)
	return n, err
}
