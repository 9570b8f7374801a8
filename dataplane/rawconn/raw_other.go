//go:build !linux

package rawconn

import "syscall"

// Elsewhere New leaves connections as they are.
const supported = false

func rawRead(uintptr, []byte) (int, syscall.Errno)  { panic("rawconn: unsupported platform") }
func rawWrite(uintptr, []byte) (int, syscall.Errno) { panic("rawconn: unsupported platform") }
func rawPeek(uintptr, []byte) (int, syscall.Errno)  { panic("rawconn: unsupported platform") }
