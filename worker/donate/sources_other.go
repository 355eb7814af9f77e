//go:build !linux && !darwin && !windows

package donate

// platformIdleSources: none on this platform; the worker relies on the
// load alone.
func platformIdleSources() []IdleSource { return nil }

// NewSystem returns the System of this machine: only the free disk space
// is known here.
func NewSystem() System { return otherSystem{} }

type otherSystem struct{}

func (otherSystem) Processes([]int, []string) (ProcStats, error) { return ProcStats{}, ErrUnsupported }
func (otherSystem) Power() (Power, error)                        { return Power{}, ErrUnsupported }
func (otherSystem) FreeDisk(path string) (int64, error)          { return statfsFree(path) }
