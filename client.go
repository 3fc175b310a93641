package main

// Clients as every front end describes them to the hub, the API and the
// logs: how they came (protocol), who they are (clientInfo, an NMS-shaped
// id), what they ask for (a stream key in the safe name set), and why
// they left (closeReason).

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"
)

type streamKey struct{ App, Name string }

func (k streamKey) String() string { return "/" + k.App + "/" + k.Name }

// clientInfo describes a publisher or a player for logs and stats.
type clientInfo struct {
	ID       string
	IP       string
	Protocol protocol
	Created  time.Time
	Query    string
	// Proxied: an HTTP request that a proxy forwarded (forwarded in
	// auth.go), whose loopback address is the proxy's.
	Proxied bool
}

// protocol is how a client reached us; it indexes the counters.
type protocol uint8

const (
	protoRTMP protocol = iota // RTMP and RTMPS
	protoHTTP                 // HTTP-FLV
	protoWS                   // WebSocket-FLV
	protoHLS                  // HLS: the muxer's subscription, and signed-URL refusals
	protoCount
)

var protocols = [protoCount]protocol{protoRTMP, protoHTTP, protoWS, protoHLS}

func (p protocol) String() string {
	switch p {
	case protoRTMP:
		return "rtmp"
	case protoHTTP:
		return "http"
	case protoWS:
		return "ws"
	case protoHLS:
		return "hls"
	}
	return fmt.Sprintf("protocol(%d)", uint8(p))
}

// MarshalText names the protocol in JSON, logs and hook bodies.
func (p protocol) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

func (p *protocol) UnmarshalText(b []byte) error {
	for _, q := range protocols {
		if q.String() == string(b) {
			*p = q
			return nil
		}
	}
	return fmt.Errorf("unknown protocol %q", b)
}

// closeReason says why a client left, in log lines, events and hooks.
type closeReason string

const (
	reasonNone           closeReason = ""
	reasonClosed         closeReason = "closed"
	reasonPeerClosed     closeReason = "peer closed"
	reasonClosedByServer closeReason = "closed by server"
	reasonPeerReset      closeReason = "peer reset"
	reasonTimeout        closeReason = "timeout"
	reasonStreamEnded    closeReason = "stream ended"
	reasonByAPI          closeReason = "by API"
	reasonNoPublisher    closeReason = "no publisher within play-wait"
)

// reasonOf turns the error that ended a connection into a reason: normal
// closes read as such, anything else as the error.
func reasonOf(err error) closeReason {
	switch {
	case err == nil:
		return reasonClosed
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return reasonPeerClosed
	case errors.Is(err, net.ErrClosed):
		return reasonClosedByServer
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return reasonPeerReset
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return reasonTimeout
	}
	return closeReason(err.Error())
}

func remoteIP(nc net.Conn) string { return hostOf(nc.RemoteAddr().String()) }

func hostOf(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	return host
}

// newClientID returns 8 characters of A-Z0-9, the shape of NMS client ids.
func newClientID() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	var b [8]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b[:])
}

// validName reports whether an app or stream name is in the safe set:
// 1 to 128 of A-Z a-z 0-9 _ - (the set NMS v4 enforces). Anything else
// could escape a path, confuse a log or collide in the API's JSON.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
