//go:build linux

package main

// Idle connections without goroutines. A viewer sends almost nothing
// (an acknowledgement now and then, a ping answer a minute), yet a
// goroutine blocked in its Read holds a stack of 4 to 8 KB for the
// viewer's whole life: a thousand viewers, several megabytes. A viewer with
// nothing to read is parked instead: its socket joins an epoll(7) set that
// one goroutine waits on, its goroutine returns, and when the socket has
// something to read (or the peer closes it) a new goroutine resumes the
// read loop. Go's own network poller has the socket too; epoll allows one
// socket in several sets.
//
// Every epoll_ctl(2) runs inside RawConn.Control, which holds the socket
// open: a closed socket's number can be reused at once, and must never be
// touched as if it were ours. Closing a socket takes it out of the set
// with no event, so whoever closes a parked connection wakes it (idleWait.wake).

import (
	"net"
	"sync"
	"syscall"
)

// idlePoller is the epoll set and the goroutine that waits on it.
type idlePoller struct {
	epfd int
	mu   sync.Mutex
	next int32               // the last token given out
	out  map[int32]*idleWait // parked connections by token
}

// idle is the process's poller, started on first use, like Go's own: one
// goroutine and one thread for every server in the process.
var idle = sync.OnceValue(newIdlePoller)

// newIdlePoller starts a poller; nil if the system refuses (every
// connection then keeps a reading goroutine).
func newIdlePoller() *idlePoller {
	if blockingWrites { // tests of the other systems' paths (writev_test.go)
		return nil
	}
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil
	}
	p := &idlePoller{epfd: epfd, out: make(map[int32]*idleWait)}
	go p.run()
	return p
}

// idleWait is one connection's place in the poller.
type idleWait struct {
	mu     sync.Mutex
	rc     syscall.RawConn
	added  bool  // in the epoll set (disarmed after an event, not removed)
	token  int32 // nonzero while parked
	resume func()
}

// park waits for nc to have something to read, then runs resume on a new
// goroutine; false if nc cannot be parked (not a plain socket, no poller),
// and then nothing runs.
func (p *idlePoller) park(w *idleWait, nc net.Conn, resume func()) bool {
	if p == nil {
		return false
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.rc == nil {
		sc, ok := nc.(syscall.Conn) // *net.TCPConn and limitConn; not *tls.Conn
		if !ok {
			return false
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			return false
		}
		w.rc = rc
	}
	p.mu.Lock()
	token := p.next
	for token == 0 || p.out[token] != nil { // 0 is "not parked"; wrapped tokens may still be out
		token++
	}
	p.next = token
	p.out[token] = w
	p.mu.Unlock()
	w.token, w.resume = token, resume
	// Level-triggered and one-shot: data already waiting fires at once, and
	// each arming fires at most once.
	// The event's data is the token (Fd is only a name: the kernel hands
	// the field back as it was set).
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: token}
	var ctlErr error
	err := w.rc.Control(func(fd uintptr) {
		op := syscall.EPOLL_CTL_ADD
		if w.added {
			op = syscall.EPOLL_CTL_MOD
		}
		ctlErr = syscall.EpollCtl(p.epfd, op, int(fd), &ev)
	})
	if err == nil && ctlErr == nil {
		w.added = true
		return true
	}
	p.mu.Lock()
	delete(p.out, token)
	p.mu.Unlock()
	w.token, w.resume = 0, nil
	return false
}

// wake resumes w now if it is parked: its connection has been closed, and
// the closed socket left the epoll set without an event.
func (p *idlePoller) wake(w *idleWait) {
	if p == nil {
		return
	}
	p.fire(w, 0)
}

// fire resumes w once, if it is parked (with token, when token is not 0).
func (p *idlePoller) fire(w *idleWait, token int32) {
	w.mu.Lock()
	if w.token == 0 || token != 0 && w.token != token {
		w.mu.Unlock()
		return
	}
	p.mu.Lock()
	delete(p.out, w.token)
	p.mu.Unlock()
	resume := w.resume
	w.token, w.resume = 0, nil
	w.mu.Unlock()
	go resume()
}

func (p *idlePoller) run() {
	events := make([]syscall.EpollEvent, 128)
	for {
		n, err := syscall.EpollWait(p.epfd, events, -1)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return // never seen; parked connections still wake when closed
		}
		for _, ev := range events[:n] {
			p.mu.Lock()
			w := p.out[ev.Fd]
			p.mu.Unlock()
			if w != nil {
				p.fire(w, ev.Fd)
			}
		}
	}
}
