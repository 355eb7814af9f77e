package donate

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// fakeProc is a /proc with the files linuxSystem reads.
type fakeProc struct {
	t   *testing.T
	dir string
}

func (p fakeProc) cpu(total, idle uint64) {
	// user nice system idle iowait irq softirq steal
	line := fmt.Sprintf("cpu  %d 0 0 %d 0 0 0 0 0 0\ncpu0 0 0 0 0 0 0 0 0 0 0\n", total-idle, idle)
	p.write("stat", line)
}

// proc writes /proc/PID/stat; times are utime (stime 0) and cutime.
func (p fakeProc) proc(pid, ppid, pgrp int, comm string, utime, cutime uint64) {
	p.write(fmt.Sprintf("%d/stat", pid), fmt.Sprintf("%d (%s) S %d %d %d 0 -1 0 0 0 0 0 %d 0 %d 0 20 0 1 0 100 0 0\n", pid, comm, ppid, pgrp, pgrp, utime, cutime))
}

func (p fakeProc) gone(pid int) { os.RemoveAll(filepath.Join(p.dir, fmt.Sprint(pid))) }

func (p fakeProc) write(name, s string) {
	path := filepath.Join(p.dir, name)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		p.t.Fatal(err)
	}
}

func TestLinuxForeignLoad(t *testing.T) {
	p := fakeProc{t, t.TempDir()}
	s := &linuxSystem{proc: p.dir, self: 100}
	apps := []string{"Zoom", "steam"}
	// The worker (100), its command's shell (200, its own group) with a
	// compiler (201), a foreign program (300), and a command's process
	// that left its parent but stayed in the group (500).
	p.cpu(1000, 800)
	p.proc(1, 0, 1, "init", 0, 0)
	p.proc(100, 1, 100, "starforge-worke", 10, 0)
	p.proc(200, 100, 200, "sh", 50, 0)
	p.proc(201, 200, 200, "cc1", 100, 0)
	p.proc(300, 1, 300, "firefox", 100, 0)
	p.proc(500, 1, 200, "daemon", 0, 0)
	st, err := s.Processes([]int{200}, apps)
	if err != nil {
		t.Fatal(err)
	}
	if st.LoadKnown || st.Exclusive != "" {
		t.Fatalf("first scan: %+v (the load needs two scans)", st)
	}

	// 1000 ticks pass, 800 of them busy: ours 10+200+100+90, firefox 400.
	p.cpu(2000, 1000)
	p.proc(100, 1, 100, "starforge-worke", 20, 0)
	p.proc(200, 100, 200, "sh", 250, 0)
	p.proc(201, 200, 200, "cc1", 200, 0)
	p.proc(300, 1, 300, "firefox", 500, 0)
	p.proc(500, 1, 200, "daemon", 90, 0)
	p.proc(600, 1, 600, "zoom", 0, 0)
	st, err = s.Processes([]int{200}, apps)
	if err != nil {
		t.Fatal(err)
	}
	if !st.LoadKnown || st.ForeignLoad != 40 || st.Exclusive != "Zoom" {
		t.Fatalf("second scan: %+v, want foreign load 40 and Zoom", st)
	}

	// The compiler exits and its shell reaps it: its 200 ticks move into
	// the shell's cutime and must not count twice; a new compiler (202)
	// ran 50 ticks. Foreign: firefox's 100 of 400 busy.
	p.cpu(2500, 1100)
	p.gone(201)
	p.gone(600)
	p.proc(200, 100, 200, "sh", 250, 200)
	p.proc(202, 200, 200, "cc1", 50, 0)
	p.proc(300, 1, 300, "firefox", 600, 0)
	p.proc(500, 1, 200, "daemon", 90, 0)
	st, err = s.Processes([]int{200}, apps)
	if err != nil {
		t.Fatal(err)
	}
	// busy 400; ours: shell +200 cutime - 200 reaped + 50 new compiler + 10
	// worker? (unchanged: 0) = 50; foreign = (400-50)/500.
	if st.ForeignLoad != 70 || st.Exclusive != "" {
		t.Fatalf("third scan: %+v, want foreign load 70", st)
	}
}

func TestLinuxPower(t *testing.T) {
	dir := t.TempDir()
	write := func(dev, name, v string) {
		os.MkdirAll(filepath.Join(dir, dev), 0o755)
		os.WriteFile(filepath.Join(dir, dev, name), []byte(v+"\n"), 0o644)
	}
	write("AC", "type", "Mains")
	write("AC", "online", "1")
	write("BAT0", "type", "Battery")
	write("BAT0", "status", "Charging")
	write("BAT0", "capacity", "55")
	write("hidpp_battery_0", "type", "Battery")
	write("hidpp_battery_0", "scope", "Device")
	write("hidpp_battery_0", "status", "Discharging")
	write("hidpp_battery_0", "capacity", "5")
	s := &linuxSystem{power: dir}
	p, err := s.Power()
	if err != nil || p.OnBattery || p.Charge != 55 {
		t.Fatalf("on mains: %+v %v (a mouse's battery is not the machine's)", p, err)
	}
	write("BAT0", "status", "Discharging")
	if p, _ = s.Power(); !p.OnBattery {
		t.Fatalf("discharging: %+v", p)
	}
	empty := &linuxSystem{power: t.TempDir()}
	if p, err := empty.Power(); err != nil || p.OnBattery || p.Charge != -1 {
		t.Fatalf("a desktop: %+v %v", p, err)
	}
}

func TestParseLogind(t *testing.T) {
	mono := 1000 * time.Second
	out := `Type=x11
Class=user
Remote=no
IdleHint=yes
IdleSinceHintMonotonic=700000000

Type=tty
Class=user
Remote=no
IdleHint=no
IdleSinceHintMonotonic=900000000

Type=tty
Class=user
Remote=yes
IdleHint=no
IdleSinceHintMonotonic=999000000

Type=x11
Class=greeter
Remote=no
IdleHint=no
IdleSinceHintMonotonic=0
`
	// The graphical session has been idle 300 s, the local text session's
	// terminal 100 s; remote sessions and the greeter do not count.
	if d, err := parseLogind([]byte(out), mono); err != nil || d != 100*time.Second {
		t.Fatalf("idle = %v, %v; want 100s", d, err)
	}
	active := "Type=wayland\nClass=user\nRemote=no\nIdleHint=no\nIdleSinceHintMonotonic=900000000\n"
	if d, _ := parseLogind([]byte(active), mono); d != 0 {
		t.Fatalf("an active graphical session: idle = %v, want 0", d)
	}
	if d, _ := parseLogind([]byte("Type=tty\nClass=user\nRemote=yes\nIdleHint=no\nIdleSinceHintMonotonic=1\n"), mono); d != noIdle {
		t.Fatalf("only remote sessions: idle = %v, want no local owner", d)
	}
}

func TestAtimeIdle(t *testing.T) {
	dir := t.TempDir()
	old, recent := filepath.Join(dir, "tty1"), filepath.Join(dir, "tty2")
	for _, p := range []string{old, recent} {
		os.WriteFile(p, nil, 0o644)
	}
	now := time.Now()
	os.Chtimes(old, now.Add(-time.Hour), now.Add(-time.Hour))
	os.Chtimes(recent, now.Add(-42*time.Second), now.Add(-time.Hour))
	a := atimeIdle{label: "ttys", globs: []string{filepath.Join(dir, "tty*")}}
	d, err := a.Idle(now)
	if err != nil || d.Round(time.Second) != 42*time.Second {
		t.Fatalf("idle = %v, %v; want 42s", d, err)
	}
	if _, err := (atimeIdle{globs: []string{filepath.Join(dir, "none*")}}).Idle(now); err == nil {
		t.Fatal("no devices must be an error (the source does not work)")
	}
}
