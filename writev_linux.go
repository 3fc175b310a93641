//go:build linux

package main

// Non-blocking writes. The fan-out writes to many viewers from one
// goroutine, so a write must never wait for a slow socket. net.Conn has no
// such write; syscall.RawConn gives the socket, which Go has already made
// O_NONBLOCK, and one writev(2) on it takes what the socket buffer has
// room for now.

import (
	"net"
	"syscall"
	"unsafe"
)

const iovMax = 1024 // IOV_MAX on Linux

type iovecs []syscall.Iovec

// rawConn is nc's socket for writevNow, or nil when nc is not a plain TCP
// connection (TLS, or a test's pipe): those viewers get blocking writes.
func rawConn(nc net.Conn) syscall.RawConn {
	sc, ok := nc.(syscall.Conn) // *net.TCPConn and limitConn; not *tls.Conn
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// writevNow writes as much of bufs as the socket takes without waiting
// and returns how many bytes that was; 0 and no error when the socket
// buffer is full.
func writevNow(rc syscall.RawConn, bufs net.Buffers, iov *iovecs) (int, error) {
	v := (*iov)[:0]
	for _, b := range bufs {
		if len(v) == iovMax {
			break
		}
		if len(b) > 0 {
			e := syscall.Iovec{Base: &b[0]}
			e.SetLen(len(b))
			v = append(v, e)
		}
	}
	if len(v) == 0 {
		return 0, nil
	}
	var n uintptr
	var errno syscall.Errno
	err := rc.Write(func(fd uintptr) bool {
		for {
			n, _, errno = syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&v[0])), uintptr(len(v)))
			if errno != syscall.EINTR {
				return true // done, whatever happened: never wait
			}
		}
	})
	clear(v) // no pointers into frames kept past the write
	*iov = v[:0]
	switch {
	case err != nil:
		return 0, err
	case errno == syscall.EAGAIN:
		return 0, nil
	case errno != 0:
		return 0, errno
	}
	return int(n), nil
}
