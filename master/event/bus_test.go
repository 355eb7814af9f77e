package event

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/starforge/starforge/master/store"
)

func TestParseFilter(t *testing.T) {
	for _, tc := range []struct {
		path    string
		want    Filter
		wantErr string
	}{
		{path: "builds/*/*", want: Filter{"builds", "*", "*"}},
		{path: "logs/7/append", want: Filter{"logs", "7", "append"}},
		{path: "builders/2/builds/*/finished", want: Filter{"builders", "2", "builds", "*", "finished"}},
		{path: "", wantErr: "empty path"},
		{path: "builds//new", wantErr: `path "builds//new": element 2 is empty`},
		{path: "builds/", wantErr: `path "builds/": element 2 is empty`},
		{path: "a/b/c/d/e/f/g/h/i/j/k/l/m/n/o/p/q", wantErr: "has 17 elements, at most 16"},
	} {
		f, err := ParseFilter(tc.path)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseFilter(%q) = %v, %v; want error containing %q", tc.path, f, err, tc.wantErr)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(f, tc.want) {
			t.Errorf("ParseFilter(%q) = %q, %v; want %q", tc.path, f, err, tc.want)
		}
		if f.String() != tc.path {
			t.Errorf("ParseFilter(%q).String() = %q", tc.path, f.String())
		}
	}
}

func TestFilterMatch(t *testing.T) {
	for _, tc := range []struct {
		filter string
		key    Key
		want   bool
	}{
		{"builds/*/*", Key{"builds", "1", "new"}, true},
		{"builds/*/*", Key{"builds", "1", "steps", "2", "new"}, false}, // lengths differ
		{"builds/1/*", Key{"builds", "2", "new"}, false},
		{"builds/*/finished", Key{"builds", "2", "new"}, false},
		{"builds/*/finished", Key{"builds", "2", "finished"}, true},
		{"*/*/*", Key{"logs", "3", "append"}, true},
		{"logs/3/append", Key{"logs", "3", "append"}, true},
		{"logs/3", Key{"logs", "3", "append"}, false},
	} {
		f, err := ParseFilter(tc.filter)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.Match(tc.key); got != tc.want {
			t.Errorf("%s matches %s = %v, want %v", tc.filter, tc.key, got, tc.want)
		}
	}
}

func mustFilter(t *testing.T, path string) Filter {
	t.Helper()
	f, err := ParseFilter(path)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// received drains what is buffered in s without waiting.
func received(s *Subscription) []string {
	var out []string
	for {
		select {
		case m, ok := <-s.C():
			if !ok {
				return append(out, "closed")
			}
			out = append(out, fmt.Sprintf("%s=%v", m.Key, m.Value))
		default:
			return out
		}
	}
}

func TestPublishSubscribe(t *testing.T) {
	b := New()
	all := b.Subscribe(10, mustFilter(t, "builds/*/*"))
	one := b.Subscribe(10, mustFilter(t, "builders/5/builds/*/*"))
	none := b.Subscribe(10)
	bd := store.Build{ID: 12, Number: 3, BuilderID: 5, WorkerID: 2}
	b.Publish("started", BuildKeys(bd, "new")...)
	b.Publish("done", BuildKeys(bd, "finished")...)
	b.Publish("other", BuildKeys(store.Build{ID: 13, Number: 1, BuilderID: 6}, "new")...)

	if got, want := received(all), []string{"builds/12/new=started", "builds/12/finished=done", "builds/13/new=other"}; !reflect.DeepEqual(got, want) {
		t.Errorf("builds/*/* got %q, want %q", got, want)
	}
	if got, want := received(one), []string{"builders/5/builds/3/new=started", "builders/5/builds/3/finished=done"}; !reflect.DeepEqual(got, want) {
		t.Errorf("builders/5/builds/*/* got %q, want %q", got, want)
	}
	if got := received(none); len(got) != 0 {
		t.Errorf("a subscription without filters got %q", got)
	}

	// A key two filters select arrives once; each key selected arrives.
	both := b.Subscribe(10, mustFilter(t, "builds/*/*"), mustFilter(t, "builds/12/*"), mustFilter(t, "workers/*/builds/*/*"))
	b.Publish("x", BuildKeys(bd, "finished")...)
	if got, want := received(both), []string{"builds/12/finished=x", "workers/2/builds/12/finished=x"}; !reflect.DeepEqual(got, want) {
		t.Errorf("overlapping filters got %q, want %q", got, want)
	}
}

func TestAddRemoveClose(t *testing.T) {
	b := New()
	s := b.Subscribe(10)
	f := mustFilter(t, "logs/7/append")
	if !s.Add(f) || s.Add(mustFilter(t, "logs/7/append")) {
		t.Error("Add: want true the first time and false the second")
	}
	b.Publish(1, LogKeys(store.Log{ID: 7, StepID: 3, Slug: "stdio"}, "append")...)
	if !s.Remove(f) || s.Remove(f) {
		t.Error("Remove: want true the first time and false the second")
	}
	b.Publish(2, LogKeys(store.Log{ID: 7, StepID: 3, Slug: "stdio"}, "append")...)
	if got, want := received(s), []string{"logs/7/append=1"}; !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
	s.Close()
	s.Close()
	if got, want := received(s), []string{"closed"}; !reflect.DeepEqual(got, want) {
		t.Errorf("after Close got %q, want %q", got, want)
	}
	if s.Err() != nil {
		t.Errorf("Err after Close = %v, want nil", s.Err())
	}
	if n, _ := b.Stats(); n != 0 {
		t.Errorf("the bus still has %d subscribers", n)
	}
	b.Publish(3, Key{"logs", "7", "append"}) // must not panic on the closed channel
}

// TestSlowSubscriberDropped: a subscriber that does not read is dropped
// when its buffer is full, Publish never waits for it, and the others
// keep receiving everything.
func TestSlowSubscriberDropped(t *testing.T) {
	b := New()
	slow := b.Subscribe(2, mustFilter(t, "logs/*/append"))
	fast := b.Subscribe(1000, mustFilter(t, "logs/*/append"))
	for i := range 100 {
		b.Publish(i, Key{"logs", "1", "append"})
	}
	var n int
	for range slow.C() {
		n++
	}
	if n != 2 {
		t.Errorf("the slow subscriber got %d messages before it was dropped, want 2", n)
	}
	if !errors.Is(slow.Err(), ErrSlow) {
		t.Errorf("slow.Err() = %v, want ErrSlow", slow.Err())
	}
	if got := len(received(fast)); got != 100 {
		t.Errorf("the fast subscriber got %d messages, want 100", got)
	}
	subs, dropped := b.Stats()
	if subs != 1 || dropped != 1 {
		t.Errorf("Stats() = %d subscribers, %d dropped; want 1, 1", subs, dropped)
	}
	slow.Close() // after being dropped: nothing happens
}

func TestTap(t *testing.T) {
	b := New()
	var got []string
	remove := b.Tap(func(e Event) { got = append(got, fmt.Sprintf("%d keys %v", len(e.Keys), e.Value)) })
	b.Publish("a", StepKeys(store.Step{ID: 1, BuildID: 2}, "started")...)
	b.Publish("none") // no keys: not published
	remove()
	b.Publish("b", StepKeys(store.Step{ID: 1, BuildID: 2}, "finished")...)
	if want := []string{"2 keys a"}; !reflect.DeepEqual(got, want) {
		t.Errorf("tap got %q, want %q", got, want)
	}
}

func TestNilBus(t *testing.T) {
	var b *Bus
	b.Publish("x", Key{"a"})
	if n, d := b.Stats(); n != 0 || d != 0 {
		t.Errorf("nil bus Stats = %d, %d", n, d)
	}
}

// TestConcurrent runs publishers, subscribers that come and go and
// filters that change at once; the race detector checks the locking,
// and every subscriber that keeps up sees each publisher's messages in
// order.
func TestConcurrent(t *testing.T) {
	b := New()
	const publishers, perPublisher = 4, 500
	keep := b.Subscribe(publishers*perPublisher*2, mustFilter(t, "p/*/n"))
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Go(func() {
			for i := range perPublisher {
				b.Publish(i, Key{"p", fmt.Sprint(p), "n"}, Key{"q", fmt.Sprint(p), "n"})
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			for range 50 {
				s := b.Subscribe(1, mustFilter(t, "q/*/n"))
				s.Add(mustFilter(t, "p/0/n"))
				s.Remove(mustFilter(t, "q/*/n"))
				s.Close()
			}
		})
	}
	wg.Wait()
	keep.Close()
	last := map[string]int{}
	n := 0
	for m := range keep.C() {
		p := m.Key[1]
		i := m.Value.(int)
		if prev, ok := last[p]; ok && i != prev+1 {
			t.Fatalf("publisher %s: message %d after %d", p, i, prev)
		}
		last[p] = i
		n++
	}
	if n != publishers*perPublisher {
		t.Errorf("got %d messages, want %d", n, publishers*perPublisher)
	}
}

func TestKeys(t *testing.T) {
	for _, tc := range []struct {
		name string
		keys []Key
		want []string
	}{
		{"build", BuildKeys(store.Build{ID: 9, Number: 4, BuilderID: 2, WorkerID: 3}, "new"),
			[]string{"builders/2/builds/4/new", "builds/9/new", "workers/3/builds/9/new"}},
		{"build without worker", BuildKeys(store.Build{ID: 9, Number: 4, BuilderID: 2}, "finished"),
			[]string{"builders/2/builds/4/finished", "builds/9/finished"}},
		{"step", StepKeys(store.Step{ID: 5, BuildID: 9}, "started"),
			[]string{"builds/9/steps/5/started", "steps/5/started"}},
		{"log", LogKeys(store.Log{ID: 7, StepID: 5, Slug: "stdio"}, "append"),
			[]string{"logs/7/append", "steps/5/logs/stdio/append"}},
		{"request", RequestKeys(store.BuildRequest{ID: 11, BuildsetID: 6, BuilderID: 2}, "new"),
			[]string{"buildsets/6/builders/2/buildrequests/11/new", "buildrequests/11/new", "builders/2/buildrequests/11/new"}},
		{"worker", WorkerKeys(store.Worker{ID: 3}, "connected"), []string{"workers/3/connected"}},
		{"change", ChangeKeys(store.Change{ID: 40}, "new"), []string{"changes/40/new"}},
	} {
		var got []string
		for _, k := range tc.keys {
			got = append(got, k.String())
		}
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s keys = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestNewLogLines(t *testing.T) {
	l := store.Log{ID: 1, NumLines: 3, Size: 30}
	lines := []byte("oa\nob\n")
	ll := NewLogLines(l, 3, 4, lines)
	lines[0] = 'X' // the event keeps its own copy
	if ll.Log.NumLines != 5 || ll.Log.Size != 36 || ll.First != 3 || ll.Last != 4 || ll.Bytes != 6 || string(ll.Lines) != "oa\nob\n" {
		t.Errorf("NewLogLines = %+v", ll)
	}
	big := make([]byte, MaxInline+1)
	if ll := NewLogLines(l, 3, 3, big); ll.Lines != nil || ll.Bytes != MaxInline+1 {
		t.Errorf("a long append carries %d bytes of lines (Bytes %d), want none", len(ll.Lines), ll.Bytes)
	}
}

func TestBusClose(t *testing.T) {
	b := New()
	s := b.Subscribe(10, Filter{"a"})
	tapped := 0
	b.Tap(func(Event) { tapped++ })
	b.Close()
	if got := received(s); !reflect.DeepEqual(got, []string{"closed"}) || !errors.Is(s.Err(), ErrClosed) {
		t.Errorf("after Close a subscription got %q, Err %v; want closed, ErrClosed", got, s.Err())
	}
	b.Publish(1, Key{"a"})
	if tapped != 0 {
		t.Error("a tap heard an event after Close")
	}
	late := b.Subscribe(10, Filter{"a"})
	if got := received(late); !reflect.DeepEqual(got, []string{"closed"}) || !errors.Is(late.Err(), ErrClosed) {
		t.Errorf("a subscription made after Close got %q, Err %v; want closed, ErrClosed", got, late.Err())
	}
	s.Close()
	late.Close()
}
