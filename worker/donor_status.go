package worker

import (
	"os"
	"sort"
	"strings"
	"time"

	"github.com/starforge/starforge/worker/donate"
)

// StatusFileName is the donating worker's status file in its base
// directory, read by `starforge-worker status`.
const StatusFileName = "donate.status"

const statusEvery = donate.StatusEvery

func (d *donor) lastWriteTime() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastWrite
}

// writeStatus writes the status file; stopped marks the worker's exit.
func (d *donor) writeStatus(stopped bool) {
	r := d.report(stopped)
	if err := donate.WriteStatus(d.state, r); err != nil {
		d.log.Warn("donate: cannot write the status file", "path", d.state, "err", err)
	}
}

// report describes the donor now.
func (d *donor) report(stopped bool) *donate.StatusReport {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.clk.Now()
	d.lastWrite = now
	st, o := d.status, d.obs
	r := &donate.StatusReport{
		PID:       os.Getpid(),
		Updated:   now,
		Stopped:   stopped,
		Master:    d.a.Master,
		Worker:    d.a.Name,
		Connected: d.sess != nil,
		Extension: d.sess != nil && d.sess.hasPause(),
		Accepting: st.Accepting,
		Reason:    st.Reason,
		Detail:    st.Detail,
		Since:     st.Since,
		Limits:    d.lim.Summary(),
		Donated:   d.donated.Round(time.Second).String(),
		BuildsRun: d.buildsRun,
		Notes:     d.cfg.Notes,
	}
	if d.cfg.Idle != nil {
		r.IdleSources = strings.Split(d.cfg.Idle.Name(), ", ")
		if o.IdleKnown {
			r.Idle = o.Idle.Round(time.Second).String()
		}
	}
	if o.LoadKnown {
		v := o.ForeignLoad
		r.ForeignLoad = &v
	}
	if o.PowerKnown {
		v := o.OnBattery
		r.OnBattery = &v
	}
	if o.DiskKnown {
		v := o.FreeDisk
		r.FreeDisk = &v
	}
	for _, b := range d.builds {
		if len(b.cmds) == 0 && !b.held {
			continue
		}
		mode := b.mode.String()
		if b.held || b.pending {
			mode = "waiting"
		}
		r.Builds = append(r.Builds, donate.BuildReport{Builder: b.builder, Build: b.id, Mode: mode, Since: b.modeSince, Commands: len(b.cmds)})
	}
	sort.Slice(r.Builds, func(i, j int) bool { return r.Builds[i].Builder < r.Builds[j].Builder })
	return r
}
