//go:build windows

package donate

import (
	"errors"
	"fmt"
	"syscall"
	"time"
	"unsafe"
)

var (
	user32                   = syscall.NewLazyDLL("user32.dll")
	kernel32                 = syscall.NewLazyDLL("kernel32.dll")
	procGetLastInputInfo     = user32.NewProc("GetLastInputInfo")
	procGetTickCount         = kernel32.NewProc("GetTickCount")
	procGetSystemPowerStatus = kernel32.NewProc("GetSystemPowerStatus")
	procGetSystemTimes       = kernel32.NewProc("GetSystemTimes")
	procGetDiskFreeSpaceExW  = kernel32.NewProc("GetDiskFreeSpaceExW")
)

// platformIdleSources: GetLastInputInfo. It sees the input of the session
// the worker runs in, so the worker must run in the owner's session (not
// as a service in session 0, which never gets input).
func platformIdleSources() []IdleSource { return []IdleSource{lastInput{}} }

type lastInput struct{}

func (lastInput) Name() string { return "GetLastInputInfo" }

func (lastInput) Idle(time.Time) (time.Duration, error) {
	var info struct {
		size uint32
		time uint32
	}
	info.size = uint32(unsafe.Sizeof(info))
	if r, _, err := procGetLastInputInfo.Call(uintptr(unsafe.Pointer(&info))); r == 0 {
		return 0, fmt.Errorf("GetLastInputInfo: %w", err)
	}
	now, _, _ := procGetTickCount.Call()
	// Both are milliseconds since boot in 32 bits; the difference is
	// right across the 49-day wrap.
	return time.Duration(uint32(now)-info.time) * time.Millisecond, nil
}

// NewSystem returns the System of this machine.
func NewSystem() System { return &windowsSystem{} }

type windowsSystem struct {
	prevIdle, prevTotal, prevOwn uint64
	scanned                      bool
}

func ft(f syscall.Filetime) uint64 { return uint64(f.HighDateTime)<<32 | uint64(f.LowDateTime) }

// Processes lists the processes for exclusive apps and measures the
// machine's busy time minus the worker process's own. The worker cannot
// see its builds' CPU time here, so the load is only known while no build
// runs.
func (s *windowsSystem) Processes(ours []int, exclusive []string) (ProcStats, error) {
	var stats ProcStats
	if len(exclusive) > 0 {
		app, err := findProcess(exclusive)
		if err != nil {
			return stats, err
		}
		stats.Exclusive = app
	}
	var idle, kernel, user syscall.Filetime
	if r, _, err := procGetSystemTimes.Call(uintptr(unsafe.Pointer(&idle)), uintptr(unsafe.Pointer(&kernel)), uintptr(unsafe.Pointer(&user))); r == 0 {
		return stats, fmt.Errorf("GetSystemTimes: %w", err)
	}
	h, err := syscall.GetCurrentProcess()
	if err != nil {
		return stats, err
	}
	var c, e, k, u syscall.Filetime
	if err := syscall.GetProcessTimes(h, &c, &e, &k, &u); err != nil {
		return stats, fmt.Errorf("GetProcessTimes: %w", err)
	}
	total := ft(kernel) + ft(user) // kernel time includes idle time
	own := ft(k) + ft(u)
	if s.scanned && total > s.prevTotal && len(ours) == 0 {
		dt := float64(total - s.prevTotal)
		busy := dt - float64(ft(idle)-s.prevIdle) - float64(own-s.prevOwn)
		stats.ForeignLoad = min(max(busy/dt*100, 0), 100)
		stats.LoadKnown = true
	}
	s.prevIdle, s.prevTotal, s.prevOwn, s.scanned = ft(idle), total, own, true
	return stats, nil
}

func findProcess(apps []string) (string, error) {
	snap, err := syscall.CreateToolhelp32Snapshot(syscall.TH32CS_SNAPPROCESS, 0)
	if err != nil {
		return "", fmt.Errorf("CreateToolhelp32Snapshot: %w", err)
	}
	defer syscall.CloseHandle(snap)
	var pe syscall.ProcessEntry32
	pe.Size = uint32(unsafe.Sizeof(pe))
	for err = syscall.Process32First(snap, &pe); err == nil; err = syscall.Process32Next(snap, &pe) {
		if app := matchApp(syscall.UTF16ToString(pe.ExeFile[:]), apps); app != "" {
			return app, nil
		}
	}
	if errors.Is(err, syscall.ERROR_NO_MORE_FILES) {
		return "", nil
	}
	return "", fmt.Errorf("Process32Next: %w", err)
}

// Power reads GetSystemPowerStatus.
func (s *windowsSystem) Power() (Power, error) {
	var st struct {
		acLine, flag, percent, saver uint8
		lifeTime, fullLifeTime       uint32
	}
	if r, _, err := procGetSystemPowerStatus.Call(uintptr(unsafe.Pointer(&st))); r == 0 {
		return Power{}, fmt.Errorf("GetSystemPowerStatus: %w", err)
	}
	p := Power{Charge: -1, OnBattery: st.acLine == 0}
	if st.percent <= 100 && st.flag != 128 {
		p.Charge = int(st.percent)
	}
	return p, nil
}

// FreeDisk implements System.
func (s *windowsSystem) FreeDisk(path string) (int64, error) {
	p, err := syscall.UTF16PtrFromString(path)
	if err != nil {
		return 0, err
	}
	var avail, total, free uint64
	if r, _, err := procGetDiskFreeSpaceExW.Call(uintptr(unsafe.Pointer(p)), uintptr(unsafe.Pointer(&avail)),
		uintptr(unsafe.Pointer(&total)), uintptr(unsafe.Pointer(&free))); r == 0 {
		return 0, fmt.Errorf("GetDiskFreeSpaceEx %s: %w", path, err)
	}
	return int64(avail), nil
}

func uintptrPtr(p *uintptr) uintptr { return uintptr(unsafe.Pointer(p)) }
