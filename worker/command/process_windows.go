//go:build windows

package command

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"unsafe"
)

// On Windows a command's processes are tracked with a job object (as
// Buildbot's worker does with pywin32): the process is assigned to a new job
// right after it starts, and killing the "group" terminates the job, which
// takes every descendant with it. The job is created with
// JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE, so stragglers also die when the
// command's job handle is released, and if the worker itself dies.
//
// There is a short window between CreateProcess and the assignment in which
// a child could spawn a process outside the job; taskkill /T is the fallback
// that catches what it can. Soft signals (anything but KILL) are delivered
// with taskkill /T without /F, which asks windowed programs to close; console
// programs usually ignore it and are killed at the next escalation step.

var (
	jobKernel32                    = syscall.NewLazyDLL("kernel32.dll")
	jobProcCreateJobObjectW        = jobKernel32.NewProc("CreateJobObjectW")
	jobProcSetInformationJobObject = jobKernel32.NewProc("SetInformationJobObject")
	jobProcAssignProcessToJob      = jobKernel32.NewProc("AssignProcessToJobObject")
	jobProcTerminateJobObject      = jobKernel32.NewProc("TerminateJobObject")
)

const (
	jobObjectExtendedLimitInformation = 9
	jobObjectLimitKillOnJobClose      = 0x2000
	jobProcessSetQuota                = 0x0100
	jobProcessTerminate               = 0x0001
)

// jobBasicLimitInformation is JOBOBJECT_BASIC_LIMIT_INFORMATION.
type jobBasicLimitInformation struct {
	PerProcessUserTimeLimit int64
	PerJobUserTimeLimit     int64
	LimitFlags              uint32
	MinimumWorkingSetSize   uintptr
	MaximumWorkingSetSize   uintptr
	ActiveProcessLimit      uint32
	Affinity                uintptr
	PriorityClass           uint32
	SchedulingClass         uint32
}

// jobIOCounters is IO_COUNTERS.
type jobIOCounters struct {
	ReadOperationCount  uint64
	WriteOperationCount uint64
	OtherOperationCount uint64
	ReadTransferCount   uint64
	WriteTransferCount  uint64
	OtherTransferCount  uint64
}

// jobExtendedLimitInformation is JOBOBJECT_EXTENDED_LIMIT_INFORMATION.
type jobExtendedLimitInformation struct {
	BasicLimitInformation jobBasicLimitInformation
	IoInfo                jobIOCounters
	ProcessMemoryLimit    uintptr
	JobMemoryLimit        uintptr
	PeakProcessMemoryUsed uintptr
	PeakJobMemoryUsed     uintptr
}

// shellArgv returns the argv that runs command with %COMSPEC% /c.
func shellArgv(command string, environ map[string]string) []string {
	comspec := "cmd.exe"
	for k, v := range environ {
		if strings.EqualFold(k, "COMSPEC") && v != "" {
			comspec = v
		}
	}
	return []string{comspec, "/c", command}
}

// prepareCmd sets the platform attributes of a command about to start. A
// shell command line is passed to cmd.exe verbatim: Go's argument escaping
// follows the C runtime's rules, which cmd.exe does not use.
func prepareCmd(cmd *exec.Cmd, isShell bool) {
	attr := &syscall.SysProcAttr{}
	if isShell && len(cmd.Args) == 3 {
		attr.CmdLine = syscall.EscapeArg(cmd.Args[0]) + ` /s /c "` + cmd.Args[2] + `"`
	}
	cmd.SysProcAttr = attr
}

// procGroup is a started command's job object (or, if one could not be
// set up, just its process tree).
type procGroup struct {
	pid int
	job syscall.Handle
}

// startGroup starts cmd and puts it into a new job object.
func startGroup(cmd *exec.Cmd) (*procGroup, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	g := &procGroup{pid: cmd.Process.Pid}
	job, err := newKillOnCloseJob()
	if err != nil {
		return g, nil // taskkill fallback
	}
	h, err := syscall.OpenProcess(jobProcessSetQuota|jobProcessTerminate, false, uint32(g.pid))
	if err != nil {
		syscall.CloseHandle(job)
		return g, nil
	}
	defer syscall.CloseHandle(h)
	if r, _, _ := jobProcAssignProcessToJob.Call(uintptr(job), uintptr(h)); r == 0 {
		syscall.CloseHandle(job)
		return g, nil
	}
	g.job = job
	return g, nil
}

func newKillOnCloseJob() (syscall.Handle, error) {
	if err := jobProcCreateJobObjectW.Find(); err != nil {
		return 0, err
	}
	r, _, err := jobProcCreateJobObjectW.Call(0, 0)
	if r == 0 {
		return 0, fmt.Errorf("CreateJobObject: %w", err)
	}
	job := syscall.Handle(r)
	var info jobExtendedLimitInformation
	info.BasicLimitInformation.LimitFlags = jobObjectLimitKillOnJobClose
	r, _, err = jobProcSetInformationJobObject.Call(uintptr(job), jobObjectExtendedLimitInformation,
		uintptr(unsafe.Pointer(&info)), unsafe.Sizeof(info))
	if r == 0 {
		syscall.CloseHandle(job)
		return 0, fmt.Errorf("SetInformationJobObject: %w", err)
	}
	return job, nil
}

// signal stops the command's processes: KILL terminates the job (or the
// tree, with taskkill /F /T); other signals ask politely with taskkill /T.
func (g *procGroup) signal(sig os.Signal) error {
	if sig == sigKill {
		if g.job != 0 {
			if r, _, err := jobProcTerminateJobObject.Call(uintptr(g.job), 1); r == 0 {
				return fmt.Errorf("TerminateJobObject: %w", err)
			}
			return nil
		}
		return taskkill(g.pid, true)
	}
	return taskkill(g.pid, false)
}

func taskkill(pid int, force bool) error {
	args := []string{"/T", "/PID", strconv.Itoa(pid)}
	if force {
		args = append([]string{"/F"}, args...)
	}
	err := exec.Command("taskkill", args...).Run()
	if ee, ok := err.(*exec.ExitError); ok && (ee.ExitCode() == 128 || ee.ExitCode() == 255) {
		return nil // the process is already gone
	}
	if err != nil {
		return fmt.Errorf("taskkill %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// release closes the job handle, which kills whatever is left in it.
func (g *procGroup) release() {
	if g.job != 0 {
		syscall.CloseHandle(g.job)
		g.job = 0
	}
}

var sigKill os.Signal = syscall.SIGKILL
var sigTerm os.Signal = syscall.SIGTERM

// signalNames are the names interruptSignal may use. Windows has no
// signals: KILL terminates, everything else asks the program to close.
var signalNames = map[string]bool{
	"HUP": true, "INT": true, "QUIT": true, "ILL": true, "TRAP": true, "ABRT": true,
	"BUS": true, "FPE": true, "KILL": true, "USR1": true, "SEGV": true, "USR2": true,
	"PIPE": true, "ALRM": true, "TERM": true,
}

// parseSignal resolves an interruptSignal name such as "TERM" or "SIGINT".
func parseSignal(name string) (os.Signal, error) {
	n := strings.TrimPrefix(strings.ToUpper(name), "SIG")
	if !signalNames[n] {
		return nil, fmt.Errorf("unknown signal %q", name)
	}
	if n == "KILL" {
		return sigKill, nil
	}
	return sigTerm, nil
}

// signalNumber is sig's number, for "process killed by signal N".
func signalNumber(sig os.Signal) int {
	if s, ok := sig.(syscall.Signal); ok {
		return int(s)
	}
	return -1
}

// exitSignal reports the signal that ended the process: never on Windows.
func exitSignal(*os.ProcessState) (int, bool) { return 0, false }

// lookPathIn finds file for a list command. Windows resolution (PATHEXT,
// the application directory) is left to exec.LookPath, which searches the
// worker's PATH rather than the child's.
func lookPathIn(file, _, _ string) (string, error) {
	if strings.ContainsAny(file, `/\:`) {
		return file, nil
	}
	return exec.LookPath(file)
}

// fileOwner returns fi's owner; Windows has no uid/gid to preserve.
func fileOwner(os.FileInfo) (uid, gid int, ok bool) { return 0, 0, false }

// id is 0: the ledger of orphaned process groups is for unix, where a
// killed worker's children outlive it (a Windows job object dies with it).
func (g *procGroup) id() int { return 0 }
