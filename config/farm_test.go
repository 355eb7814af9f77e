package config

import (
	"reflect"
	"testing"
	"time"
)

// TestFarms checks what package_farm() declares: its platforms from the
// workers' properties, its builders in Config.Builders, and its settings.
func TestFarms(t *testing.T) {
	tests := []struct {
		name, src string
		want      []*Farm
		builders  []string // all builder names, in order
	}{
		{
			name: "defaults, every platform worker, latent ones too",
			src: `
worker("a", "pw", properties = {"os": "debian", "release": "12", "arch": "amd64"})
worker("donated", "pw", properties = {"os": "debian", "release": "12", "arch": "amd64"}, donated = True)
worker("plain", "pw")
latent_worker("l", process_driver(), properties = {"os": "alpine", "release": "3.20", "arch": "aarch64"})
package_farm("p", [shell("make")])
`,
			want: []*Farm{{
				Name: "p", IncomingInterval: DefaultIncomingInterval, OnFailure: "stop",
				Platforms: []FarmPlatform{
					{Name: "alpine-3.20-aarch64", OS: "alpine", Release: "3.20", Arch: "aarch64", Builder: "p-alpine-3.20-aarch64", WorkerNames: []string{"l"}},
					{Name: "debian-12-amd64", OS: "debian", Release: "12", Arch: "amd64", Builder: "p-debian-12-amd64", WorkerNames: []string{"a"}},
				},
			}},
			builders: []string{"p-alpine-3.20-aarch64", "p-debian-12-amd64"},
		},
		{
			name: "explicit workers, publish_command, steps function",
			src: `
def steps(build):
    return [shell("make")]
worker("b", "pw", properties = {"os": "debian", "release": "13", "arch": "arm64"})
worker("a", "pw", properties = {"os": "debian", "release": "13", "arch": "arm64"})
worker("c", "pw", properties = {"os": "debian", "release": "12", "arch": "arm64"})
builder("x", ["c"], [shell("true")])
package_farm("p", steps, workers = ["b", "a"], incoming = "in", incoming_interval = "1m",
    publish = publish_command(["./publish", "--all"], env = {"K": "v"}, timeout = None), on_failure = "retry")
package_farm("q", steps, workers = ["c"], publish = publish_command("echo hi"))
`,
			want: []*Farm{{
				Name: "p", Incoming: "in", IncomingInterval: time.Minute, OnFailure: "retry",
				Publish: &Publish{Kind: "command", Command: []string{"./publish", "--all"}, Env: map[string]string{"K": "v"}},
				Platforms: []FarmPlatform{
					{Name: "debian-13-arm64", OS: "debian", Release: "13", Arch: "arm64", Builder: "p-debian-13-arm64", WorkerNames: []string{"a", "b"}},
				},
			}, {
				Name: "q", IncomingInterval: DefaultIncomingInterval, OnFailure: "stop",
				Publish: &Publish{Kind: "command", Command: []string{"/bin/sh", "-c", "echo hi"}, Timeout: DefaultPublishTimeout},
				Platforms: []FarmPlatform{
					{Name: "debian-12-arm64", OS: "debian", Release: "12", Arch: "arm64", Builder: "q-debian-12-arm64", WorkerNames: []string{"c"}},
				},
			}},
			builders: []string{"x", "p-debian-13-arm64", "q-debian-12-arm64"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := loadText(t, tt.src)
			for _, f := range cfg.Farms {
				f.Pos = Pos{}
				if f.Publish != nil {
					f.Publish.Pos = Pos{}
				}
			}
			if !reflect.DeepEqual(cfg.Farms, tt.want) {
				t.Errorf("farms:\n%+v\nwant\n%+v", deref(cfg.Farms), deref(tt.want))
			}
			var names []string
			for _, b := range cfg.Builders {
				names = append(names, b.Name)
			}
			if !reflect.DeepEqual(names, tt.builders) {
				t.Errorf("builders %q, want %q", names, tt.builders)
			}
			for _, f := range cfg.Farms {
				for _, p := range f.Platforms {
					b := cfg.Builder(p.Builder)
					if b == nil {
						t.Fatalf("no builder %q", p.Builder)
					}
					if b.Properties["platform"] != p.Name || b.Properties["os"] != p.OS || b.Tags[0] != f.Name {
						t.Errorf("builder %q: properties %v, tags %q", b.Name, b.Properties, b.Tags)
					}
					if (b.StepsFn == nil) == (len(b.Steps) == 0) {
						t.Errorf("builder %q: steps %v, steps function %v", b.Name, b.Steps, b.StepsFn)
					}
				}
			}
		})
	}
}

// TestFarmBuildersOwnSteps checks that each platform's builder has its own
// copies of the farm's steps, as builder() gives each builder.
func TestFarmBuildersOwnSteps(t *testing.T) {
	cfg := loadText(t, `
worker("a", "pw", properties = {"os": "debian", "release": "12", "arch": "amd64"})
worker("b", "pw", properties = {"os": "debian", "release": "13", "arch": "amd64"})
package_farm("p", [shell("make")])
`)
	b1, b2 := cfg.Builders[0], cfg.Builders[1]
	if b1.Steps[0] == b2.Steps[0] {
		t.Error("two farm builders share a *Step")
	}
}

func deref(fs []*Farm) []Farm {
	var out []Farm
	for _, f := range fs {
		out = append(out, *f)
	}
	return out
}
