//go:build linux

package main

// Non-blocking writes. The flushers write to many viewers from one
// goroutine, so a write must never wait for a slow socket. net.Conn has no
// such write; syscall.RawConn gives the socket, which Go has already made
// O_NONBLOCK, and one writev(2) on it takes what the socket buffer has
// room for now.

import (
	"net"
	"sync"
	"syscall"
	"unsafe"
)

const iovMax = 1024 // IOV_MAX on Linux

// blockingWrites turns the non-blocking writer off: every player then gets
// blocking writes from its own goroutine, as on other systems. Tests only:
// GMS_BLOCKING_WRITES=1 sets it in a test binary (writev_test.go), so that
// Linux runs the write path of the other systems too.
var blockingWrites bool

// nonblockWriter is one socket's non-blocking writev. It keeps what a call
// needs from one call to the next, so that a write allocates nothing.
type nonblockWriter struct {
	rc    syscall.RawConn
	iov   []syscall.Iovec // borrowed from iovPool for one call
	n     uintptr
	errno syscall.Errno
	call  func(fd uintptr) bool // w.writev, bound once
}

// iovPool holds the iovec arrays of writes in progress: one per flusher
// at a time, not one per socket (a join burst's array would stay with its
// viewer for good).
var iovPool = sync.Pool{New: func() any { return new([]syscall.Iovec) }}

// newNonblockWriter returns nc's non-blocking write, or nil when nc is not
// a plain TCP connection (TLS, or a test's pipe): those viewers get
// blocking writes.
func newNonblockWriter(nc net.Conn) func(net.Buffers) (int, error) {
	if blockingWrites {
		return nil
	}
	sc, ok := nc.(syscall.Conn) // *net.TCPConn and limitConn; not *tls.Conn
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	w := &nonblockWriter{rc: rc}
	w.call = w.writev
	return w.write
}

// write writes as much of bufs as the socket takes without waiting and
// returns how many bytes that was: 0 and no error when it is full.
func (w *nonblockWriter) write(bufs net.Buffers) (int, error) {
	pooled := iovPool.Get().(*[]syscall.Iovec)
	w.iov = (*pooled)[:0]
	defer func() {
		clear(w.iov) // no pointers into frames kept past the write
		*pooled, w.iov = w.iov[:0], nil
		iovPool.Put(pooled)
	}()
	for _, b := range bufs {
		if len(w.iov) == iovMax {
			break
		}
		if len(b) > 0 {
			v := syscall.Iovec{Base: &b[0]}
			v.SetLen(len(b))
			w.iov = append(w.iov, v)
		}
	}
	if len(w.iov) == 0 {
		return 0, nil
	}
	err := w.rc.Write(w.call)
	switch {
	case err != nil:
		return 0, err
	case w.errno == syscall.EAGAIN:
		return 0, nil
	case w.errno != 0:
		return 0, w.errno
	}
	return int(w.n), nil
}

func (w *nonblockWriter) writev(fd uintptr) bool {
	for {
		w.n, _, w.errno = syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&w.iov[0])), uintptr(len(w.iov)))
		if w.errno != syscall.EINTR {
			return true // done, whatever happened: never wait for the socket
		}
	}
}
