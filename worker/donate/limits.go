package donate

import "fmt"

// Limits bound what builds may take of the machine. They apply to the
// worker process itself, so that every command inherits them, and
// throttling tightens them for one build.
type Limits struct {
	// Cores is how many CPUs builds may use; 0: all.
	Cores int
	// Nice is the scheduling priority of the worker and its builds, 0
	// (normal) to 19 (lowest).
	Nice int
	// IOClass is the I/O scheduling class on Linux: "idle" (disk time only
	// when nobody else wants it), "best-effort" (the lowest level of the
	// normal class) or "" (unchanged).
	IOClass string
	// MemoryMax caps the memory of all builds together, in bytes, with a
	// cgroup v2 where the worker may create one; 0: no cap.
	MemoryMax int64
	// ThrottleCores is how many CPUs a throttled build keeps (default 1).
	ThrottleCores int
}

// Defaults for the limits.
const (
	DefaultNice          = 10
	DefaultIOClass       = "idle"
	DefaultThrottleCores = 1
)

// DefaultLimits returns the default limits: all cores, nice 10, idle I/O,
// no memory cap, one core when throttled.
func DefaultLimits() Limits {
	return Limits{Nice: DefaultNice, IOClass: DefaultIOClass, ThrottleCores: DefaultThrottleCores}
}

// Check reports a limit that makes no sense.
func (l Limits) Check() error {
	switch {
	case l.Cores < 0:
		return fmt.Errorf("cores must not be negative, got %d", l.Cores)
	case l.Nice < 0 || l.Nice > 19:
		return fmt.Errorf("nice must be 0 to 19, got %d", l.Nice)
	case l.IOClass != "" && l.IOClass != "idle" && l.IOClass != "best-effort":
		return fmt.Errorf("ionice %q: want idle, best-effort or none", l.IOClass)
	case l.MemoryMax < 0:
		return fmt.Errorf("memory-max must not be negative")
	case l.ThrottleCores < 1:
		return fmt.Errorf("throttle-cores must be at least 1, got %d", l.ThrottleCores)
	}
	return nil
}
