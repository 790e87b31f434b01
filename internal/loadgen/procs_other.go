//go:build !linux

package loadgen

import "os/exec"

// setParentDeathSignal does nothing where the kernel offers no such
// signal: the child still ends when its standard input closes.
func setParentDeathSignal(*exec.Cmd) {}
