//go:build !linux

package main

// Elsewhere than Linux every viewer gets blocking writes from its own
// goroutine (see writev_linux.go).

import (
	"errors"
	"net"
	"syscall"
)

type iovecs struct{}

func rawConn(net.Conn) syscall.RawConn { return nil }

func writevNow(syscall.RawConn, net.Buffers, *iovecs) (int, error) {
	return 0, errors.ErrUnsupported
}
