package config

import (
	"path"
	"strings"
	"time"

	"go.starlark.net/starlark"
)

// DefaultArtifactRetentionInterval is artifact_retention()'s default
// interval.
const DefaultArtifactRetentionInterval = time.Hour

// ArtifactRetention is one artifact_retention() policy: which artifacts of
// the finished builds of its builders the master keeps. A build beyond
// either limit loses its artifacts; builds still running keep theirs.
type ArtifactRetention struct {
	KeepBuilds int // keep the artifacts of the newest N finished builds; 0: no limit
	KeepDays   int // keep those of builds completed in the last N days; 0: no limit
	// Builders are the builder names (or path.Match patterns) the policy
	// covers; nil covers every builder.
	Builders []string
	Interval time.Duration // how often the janitor applies it
	Pos      Pos
}

// Covers reports whether the policy covers builder name.
func (r *ArtifactRetention) Covers(name string) bool {
	if r.Builders == nil {
		return true
	}
	for _, b := range r.Builders {
		if ok, _ := path.Match(b, name); ok || b == name {
			return true
		}
	}
	return false
}

// ArtifactPolicy returns the policy of builder name: the first
// artifact_retention() that covers it, or nil if none does (its artifacts
// are kept for ever).
func (c *Config) ArtifactPolicy(name string) *ArtifactRetention {
	for _, r := range c.ArtifactRetention {
		if r.Covers(name) {
			return r
		}
	}
	return nil
}

var artifactRetentionParams = []param{
	{name: "keep_builds"},
	{name: "keep_days"},
	{name: "builders"},
	{name: "interval"},
}

const artifactRetentionKey = "starforge/config.artifactretention"

func (l *loader) artifactRetention() *[]*ArtifactRetention {
	if p, ok := l.thread.Local(artifactRetentionKey).(*[]*ArtifactRetention); ok {
		return p
	}
	p := new([]*ArtifactRetention)
	l.thread.SetLocal(artifactRetentionKey, p)
	return p
}

// builtinArtifactRetention implements artifact_retention(keep_builds=None,
// keep_days=None, builders=None, interval="1h").
func builtinArtifactRetention(c *call) (starlark.Value, error) {
	r := &ArtifactRetention{Pos: c.pos, Interval: DefaultArtifactRetentionInterval}
	r.KeepBuilds = c.int("keep_builds", 0)
	if v, ok := c.given("keep_builds"); ok && isInt(v) && r.KeepBuilds < 1 {
		c.argErrorf("keep_builds", "must be at least 1, got %d (None keeps any number)", r.KeepBuilds)
	}
	r.KeepDays = c.int("keep_days", 0)
	if v, ok := c.given("keep_days"); ok && isInt(v) && r.KeepDays < 1 {
		c.argErrorf("keep_days", "must be at least 1, got %d (None keeps them whatever their age)", r.KeepDays)
	}
	_, kb := c.given("keep_builds")
	_, kd := c.given("keep_days")
	if !kb && !kd {
		c.errorf("give keep_builds, keep_days or both")
	}
	if _, ok := c.given("builders"); ok {
		r.Builders = c.strList("builders")
		if r.Builders == nil {
			r.Builders = []string{}
			c.argErrorf("builders", "is empty: give None to cover every builder")
		}
		for _, b := range r.Builders {
			if _, err := path.Match(b, ""); err != nil {
				c.argErrorf("builders", "bad pattern %q: %v", b, err)
			}
		}
	}
	if _, ok := c.given("interval"); ok {
		if d := c.duration("interval", DefaultArtifactRetentionInterval); d > 0 {
			r.Interval = d
		}
	}
	if c.ok() {
		p := c.l.artifactRetention()
		*p = append(*p, r)
	}
	return starlark.None, nil
}

// collectArtifactRetention moves the declared policies into cfg and checks
// that the builders they name exist. It runs once every builder, those of
// package farms included, is in cfg.Builders.
func (l *loader) collectArtifactRetention(cfg *Config) {
	names := make([]string, 0, len(cfg.Builders))
	known := make(map[string]bool, len(cfg.Builders))
	for _, b := range cfg.Builders {
		names = append(names, b.Name)
		known[b.Name] = true
	}
	for _, r := range *l.artifactRetention() {
		for _, b := range r.Builders {
			if !known[b] && !strings.ContainsAny(b, `*?[\`) {
				l.errs.addf(r.Pos, "artifact_retention: builders: unknown builder %q%s", b, didYouMean(b, names))
			}
		}
		cfg.ArtifactRetention = append(cfg.ArtifactRetention, r)
	}
}

func isInt(v starlark.Value) bool { _, ok := v.(starlark.Int); return ok }
