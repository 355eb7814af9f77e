//go:build windows

package command

import (
	"errors"
	"fmt"
	"syscall"
	"unsafe"
)

// On Windows a frozen command's processes are suspended one by one: every
// process of its job object, with ntdll's NtSuspendProcess (what Resource
// Monitor's "Suspend process" does).

var (
	ntdll                            = syscall.NewLazyDLL("ntdll.dll")
	procNtSuspendProcess             = ntdll.NewProc("NtSuspendProcess")
	procNtResumeProcess              = ntdll.NewProc("NtResumeProcess")
	jobProcQueryInformationJobObject = jobKernel32.NewProc("QueryInformationJobObject")
)

const (
	jobObjectBasicProcessIDList = 3
	processSuspendResume        = 0x0800
)

// canStop: commands in a job object can be suspended.
const canStop = true

func (g *procGroup) stop() error { return g.eachProcess(procNtSuspendProcess) }

func (g *procGroup) cont() error { return g.eachProcess(procNtResumeProcess) }

// eachProcess calls fn (NtSuspendProcess or NtResumeProcess) on every
// process of the job.
func (g *procGroup) eachProcess(fn *syscall.LazyProc) error {
	if g.job == 0 {
		return errUnsupported // no job object: the tree is not known
	}
	var buf struct {
		assigned, listed uint32
		ids              [1024]uintptr
	}
	if r, _, err := jobProcQueryInformationJobObject.Call(uintptr(g.job), jobObjectBasicProcessIDList,
		uintptr(unsafe.Pointer(&buf)), unsafe.Sizeof(buf), 0); r == 0 {
		return fmt.Errorf("QueryInformationJobObject: %w", err)
	}
	var errs []error
	for _, pid := range buf.ids[:buf.listed] {
		h, err := syscall.OpenProcess(processSuspendResume, false, uint32(pid))
		if err != nil {
			continue // it exited meanwhile
		}
		if st, _, _ := fn.Call(uintptr(h)); st != 0 {
			errs = append(errs, fmt.Errorf("%s(%d): NTSTATUS %#x", fn.Name, pid, st))
		}
		syscall.CloseHandle(h)
	}
	return errors.Join(errs...)
}
