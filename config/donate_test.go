package config

import "testing"

func TestDonatedWorkersAndBuilders(t *testing.T) {
	cfg := loadSrc(t, `
worker("ci-1", "pw")
worker("desk-ann", "pw", donated = True)
builder("trusted", ["ci-1", "desk-ann"], [shell("make")], allow_donated = True)
builder("pull-requests", ["ci-1", "desk-ann"], [shell("make")])
`)
	ci, desk := cfg.Worker("ci-1"), cfg.Worker("desk-ann")
	if ci.Donated || !desk.Donated {
		t.Fatalf("donated: ci-1 %v, desk-ann %v", ci.Donated, desk.Donated)
	}
	trusted, prs := cfg.Builder("trusted"), cfg.Builder("pull-requests")
	if !trusted.AllowDonated || prs.AllowDonated {
		t.Fatalf("allow_donated: trusted %v, pull-requests %v", trusted.AllowDonated, prs.AllowDonated)
	}
	tests := []struct {
		b    *Builder
		w    *Worker
		want bool
	}{
		{trusted, ci, true},
		{trusted, desk, true},
		{prs, ci, true},
		{prs, desk, false},
		{prs, nil, true}, // latent workers are never donated
	}
	for _, tt := range tests {
		if got := tt.b.AcceptsWorker(tt.w); got != tt.want {
			name := "nil"
			if tt.w != nil {
				name = tt.w.Name
			}
			t.Errorf("%s.AcceptsWorker(%s) = %v, want %v", tt.b.Name, name, got, tt.want)
		}
	}
}
