package sshd

import (
	"flag"
	"fmt"
	"io"
	"strings"
)

// maxPatch bounds the patch read from standard input.
const maxPatch = 16 << 20

var tryCmd = &command{
	name: "try", synopsis: "BUILDER... [--baserev REV] [--branch B] [--repository URL] [-p N] [--comment TEXT] [--prop NAME=VALUE]... [--wait] < PATCH",
	summary: "build a base revision with your patch (from standard input) applied",
	perm:    "force", minArgs: 1, maxArgs: -1,
	detail: `Reads a unified diff (git diff, diff -u) from standard input and queues
one build of each BUILDER that checks out REV (or the head of B) and applies
the patch after the checkout. The builders must be listed by one
try_scheduler. With --wait the logs are printed as they grow and the exit
code is the result: 0 if every build succeeded, 1 if not. The patch is stored
with the builds and shown on their pages.

  git diff origin/main | ssh -p 2222 ci.example.org try unit --baserev $(git rev-parse origin/main) --wait`,
	define: func(fs *flag.FlagSet) func(*cmdCtx, []string) int {
		baserev := fs.String("baserev", "", "the revision the patch applies to (`REV`); default: the head of --branch")
		branch := fs.String("branch", "", "the branch (`B`) to check out")
		repo := fs.String("repository", "", "the repository (`URL`); default: the one the builders' steps name")
		level := fs.Int("p", 1, "strip `N` leading path components from the patch's file names, as patch -p (git diff: 1)")
		comment := fs.String("comment", "", "what the patch is (`TEXT`), shown on the build page")
		wait := fs.Bool("wait", false, "follow the builds and exit with their result")
		asJSON := fs.Bool("json", false, "print the buildset and request ids as JSON (without --wait)")
		props := propFlag{}
		fs.Var(props, "prop", "a build property `NAME=VALUE` (repeatable)")
		return func(c *cmdCtx, args []string) int {
			for _, b := range args {
				if c.cfg.Builder(b) == nil {
					return c.errorf(ExitUsage, "no builder named %q%s", b, didYouMean(b, builderNames(c)))
				}
				if !c.allowedOn("force", b) {
					return ExitRefused
				}
				if c.cfg.TrySchedulerFor(b) == nil {
					return c.errorf(ExitRefused, "builder %q does not accept try jobs: no try_scheduler lists it", b)
				}
			}
			patch, err := readAll(c, io.LimitReader(c.in, maxPatch+1))
			if err != nil {
				return c.fail(fmt.Errorf("read the patch from standard input: %w", err))
			}
			if len(patch) > maxPatch {
				return c.errorf(ExitUsage, "the patch is larger than %d bytes", maxPatch)
			}
			if strings.TrimSpace(string(patch)) == "" {
				return c.errorf(ExitUsage, "no patch on standard input: pipe a unified diff in, as in  git diff | ssh HOST try BUILDER")
			}
			bs, reqs, err := c.b.Try(c.ctx, TryRequest{
				Builders: args, BaseRev: *baserev, Branch: *branch, Repository: *repo,
				Patch: patch, PatchLevel: *level, Who: c.user, Comment: *comment, Properties: props,
			})
			if err != nil {
				return c.fail(err)
			}
			if !*asJSON || *wait {
				fmt.Fprintf(c.errOut, "try: %d-byte patch stored\n", len(patch))
			}
			return queued(c, bs, reqs, *wait, *asJSON)
		}
	},
}

// readAll reads r to its end, or until the command's context ends (the
// master stopping): a client that never closes standard input must not
// hold the session open.
func readAll(c *cmdCtx, r io.Reader) ([]byte, error) {
	type res struct {
		b   []byte
		err error
	}
	ch := make(chan res, 1) // the reader returns when the session closes
	go func() {
		b, err := io.ReadAll(r)
		ch <- res{b, err}
	}()
	select {
	case x := <-ch:
		return x.b, x.err
	case <-c.ctx.Done():
		return nil, c.ctx.Err()
	}
}
