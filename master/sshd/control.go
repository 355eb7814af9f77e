package sshd

import (
	"flag"
	"fmt"
	"strings"

	"github.com/starforge/starforge/master/store"
)

// queued prints what was queued, and follows it with wait.
func queued(c *cmdCtx, bs store.Buildset, reqs []store.BuildRequest, wait, asJSON bool) int {
	if asJSON && !wait {
		type reqJSON struct {
			ID      int64  `json:"id"`
			Builder string `json:"builder"`
		}
		rs := []reqJSON{}
		for _, r := range reqs {
			rs = append(rs, reqJSON{r.ID, r.BuilderName})
		}
		return c.printJSON(map[string]any{"buildset": bs.ID, "requests": rs})
	}
	var parts []string
	for _, r := range reqs {
		parts = append(parts, fmt.Sprintf("build request %d for %s", r.ID, r.BuilderName))
	}
	fmt.Fprintf(c.out, "queued buildset %d: %s\n", bs.ID, strings.Join(parts, ", "))
	if !wait {
		return ExitOK
	}
	return waitRequests(c, reqs)
}

var forceCmd = &command{
	name: "force", synopsis: "BUILDER [--branch B] [--revision REV] [--prop NAME=VALUE]... [--reason TEXT] [--wait] [--json]",
	summary: "queue a build of BUILDER through its force scheduler", perm: "force", minArgs: 1, maxArgs: 1,
	detail: `The first force_scheduler listing BUILDER queues it. --branch and
--revision set the build properties branch and revision (the git step checks
out the revision property when the build has no revision of its own). With
--wait the build's logs are printed as they grow, and the exit code is 0 if it
succeeded, 1 if not.`,
	define: func(fs *flag.FlagSet) func(*cmdCtx, []string) int {
		branch := fs.String("branch", "", "the branch to build (`B`): sets the property branch")
		rev := fs.String("revision", "", "the revision to build (`REV`): sets the property revision")
		reason := fs.String("reason", "", "why the build is forced (`TEXT`)")
		wait := fs.Bool("wait", false, "follow the build and exit with its result")
		asJSON := fs.Bool("json", false, "print the buildset and request ids as JSON (without --wait)")
		props := propFlag{}
		fs.Var(props, "prop", "a build property `NAME=VALUE` (repeatable)")
		return func(c *cmdCtx, args []string) int {
			builder := args[0]
			if c.cfg.Builder(builder) == nil {
				return c.errorf(ExitUsage, "no builder named %q%s", builder, didYouMean(builder, builderNames(c)))
			}
			if !c.allowedOn("force", builder) {
				return ExitRefused
			}
			sched := c.cfg.ForceSchedulerFor(builder)
			if sched == nil {
				return c.errorf(ExitRefused, "builder %s cannot be forced: no force_scheduler lists it", builder)
			}
			for k := range props {
				switch k {
				case "reason", "owner", "scheduler":
					return c.errorf(ExitUsage, "--prop %s: the force request sets that property itself; use --reason for the reason", k)
				case "branch", "revision":
					if (k == "branch" && *branch != "") || (k == "revision" && *rev != "") {
						return c.errorf(ExitUsage, "--prop %s and --%s both given; give one", k, k)
					}
				}
			}
			if *branch != "" {
				props["branch"] = *branch
			}
			if *rev != "" {
				props["revision"] = *rev
			}
			why := *reason
			if why == "" {
				why = "forced over SSH"
			}
			bs, reqs, err := c.b.Force(c.ctx, ForceRequest{Scheduler: sched.Name, Builder: builder, Reason: why, Owner: c.user, Properties: props})
			if err != nil {
				return c.fail(err)
			}
			return queued(c, bs, reqs, *wait, *asJSON)
		}
	},
}

func builderNames(c *cmdCtx) []string {
	var names []string
	for _, b := range c.cfg.Builders {
		names = append(names, b.Name)
	}
	return names
}

var rebuildCmd = &command{
	name: "rebuild", synopsis: "BUILD [--wait] [--json]", perm: "rebuild", minArgs: 1, maxArgs: 1,
	summary: "queue a build again: same builder, source stamps (and patch), changes and properties",
	define: func(fs *flag.FlagSet) func(*cmdCtx, []string) int {
		wait := fs.Bool("wait", false, "follow the new build and exit with its result")
		asJSON := fs.Bool("json", false, "print the buildset and request ids as JSON (without --wait)")
		return func(c *cmdCtx, args []string) int {
			b, code := resolveBuild(c, args[0])
			if code != ExitOK {
				return code
			}
			if !c.allowedOn("rebuild", b.BuilderName) {
				return ExitRefused
			}
			bs, reqs, err := c.b.Rebuild(c.ctx, b.ID, c.user)
			if err != nil {
				return c.fail(err)
			}
			return queued(c, bs, reqs, *wait, *asJSON)
		}
	},
}

var cancelCmd = &command{
	name: "cancel", synopsis: "REQUEST [--reason TEXT]", perm: "cancel", minArgs: 1, maxArgs: 1,
	summary: "cancel a pending build request (queue lists them); a started one needs stop",
	define: func(fs *flag.FlagSet) func(*cmdCtx, []string) int {
		reason := fs.String("reason", "", "why (`TEXT`), shown with the request")
		return func(c *cmdCtx, args []string) int {
			id, err := parseID("build request", args[0])
			if err != nil {
				return c.errorf(ExitUsage, "%v", err)
			}
			if req, err := c.b.Store().GetRequest(c.ctx, id); err == nil && !c.allowedOn("cancel", req.BuilderName) {
				return ExitRefused
			}
			why := *reason
			if why == "" {
				why = "cancelled by " + c.user + " over SSH"
			}
			if err := c.b.CancelRequest(c.ctx, id, why); err != nil {
				return c.fail(err)
			}
			fmt.Fprintf(c.out, "cancelled build request %d\n", id)
			return ExitOK
		}
	},
}

var stopCmd = &command{
	name: "stop", synopsis: "BUILD [--reason TEXT]", perm: "stop", minArgs: 1, maxArgs: 1,
	summary: "stop a running build; it ends CANCELLED",
	define: func(fs *flag.FlagSet) func(*cmdCtx, []string) int {
		reason := fs.String("reason", "", "why (`TEXT`), shown in the build")
		return func(c *cmdCtx, args []string) int {
			b, code := resolveBuild(c, args[0])
			if code != ExitOK {
				return code
			}
			if !c.allowedOn("stop", b.BuilderName) {
				return ExitRefused
			}
			why := *reason
			if why == "" {
				why = "stopped by " + c.user + " over SSH"
			}
			if err := c.b.StopBuild(c.ctx, b.ID, why); err != nil {
				return c.fail(err)
			}
			fmt.Fprintf(c.out, "stopping %s/%d (build %d)\n", b.BuilderName, b.Number, b.ID)
			return ExitOK
		}
	},
}

func pauseCommand(name string, pause bool) *command {
	summary := "stop giving WORKER new builds (running ones go on); kept across restarts"
	if !pause {
		summary = "let WORKER take new builds again"
	}
	return &command{
		name: name, synopsis: "WORKER [--reason TEXT]", perm: "pause", minArgs: 1, maxArgs: 1, summary: summary,
		define: func(fs *flag.FlagSet) func(*cmdCtx, []string) int {
			reason := fs.String("reason", "", "why (`TEXT`), shown on the workers page and in the queue")
			return func(c *cmdCtx, args []string) int {
				w := args[0]
				if c.cfg.Worker(w) == nil {
					var names []string
					for _, x := range c.cfg.Workers {
						names = append(names, x.Name)
					}
					return c.errorf(ExitUsage, "no worker named %q%s", w, didYouMean(w, names))
				}
				why := *reason
				if why == "" && pause {
					why = "paused by " + c.user
				}
				var err error
				if pause {
					err = c.b.PauseWorker(c.ctx, w, why)
				} else {
					err = c.b.UnpauseWorker(c.ctx, w, why)
				}
				if err != nil {
					return c.fail(err)
				}
				fmt.Fprintf(c.out, "%sd worker %s\n", name, w)
				return ExitOK
			}
		},
	}
}

var (
	pauseCmd   = pauseCommand("pause", true)
	unpauseCmd = pauseCommand("unpause", false)
)

var reconfigCmd = &command{
	name: "reconfig", perm: "reconfig", summary: "load master.star again; an invalid file changes nothing",
	define: func(fs *flag.FlagSet) func(*cmdCtx, []string) int {
		return func(c *cmdCtx, _ []string) int {
			res, err := c.b.Reconfig(c.ctx)
			if err != nil {
				fmt.Fprintf(c.errOut, "starforge reconfig: the configuration was not changed:\n%v\n", err)
				return ExitError
			}
			fmt.Fprintf(c.out, "reconfigured: %s\n", res.Summary)
			if len(res.Cancelled) > 0 {
				var ids []string
				for _, id := range res.Cancelled {
					ids = append(ids, fmt.Sprint(id))
				}
				fmt.Fprintf(c.out, "cancelled the queued requests of removed builders: %s\n", strings.Join(ids, ", "))
			}
			if len(res.Disconnected) > 0 {
				fmt.Fprintf(c.out, "disconnected workers: %s\n", strings.Join(res.Disconnected, ", "))
			}
			return ExitOK
		}
	},
}
