package loadgen

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal asks Linux to kill the child when the parent dies.
func setParentDeathSignal(cmd *exec.Cmd) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
}
