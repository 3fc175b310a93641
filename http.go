package main

// HTTP: HTTP-FLV and WebSocket-FLV players (RFC 6455 on the standard
// library), the JSON API and the embedded admin page.

import (
	"bufio"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "embed"
)

//go:embed admin.html
var adminHTML []byte

type httpServer struct {
	cfg *config
	hub *hub
	log *slog.Logger

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // hijacked player connections
	closed bool
	wg     sync.WaitGroup
}

func newHTTPServer(cfg *config, h *hub, log *slog.Logger) *httpServer {
	return &httpServer{cfg: cfg, hub: h, log: log, conns: map[net.Conn]struct{}{}}
}

// handler builds the HTTP routes.
func (s *httpServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/admin/", http.StatusFound)
	})
	mux.HandleFunc("GET /admin/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(adminHTML)
	})
	mux.HandleFunc("GET /api/streams", s.apiStreams)
	mux.HandleFunc("GET /{app}/{file}", s.serveFLV)
	return s.cors(mux)
}

// cors adds the Access-Control-Allow-Origin header NMS users rely on.
func (s *httpServer) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.AllowOrigin != "" {
			w.Header().Set("Access-Control-Allow-Origin", s.cfg.AllowOrigin)
		}
		if r.Method == http.MethodOptions {
			s.preflight(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// preflight answers CORS preflight requests (Fetch standard, CORS protocol).
func (s *httpServer) preflight(w http.ResponseWriter, r *http.Request) {
	if s.cfg.AllowOrigin != "" {
		h := w.Header()
		h.Set("Access-Control-Allow-Methods", "GET, HEAD, DELETE, OPTIONS")
		if req := r.Header.Get("Access-Control-Request-Headers"); req != "" {
			h.Set("Access-Control-Allow-Headers", req)
		}
		h.Set("Access-Control-Max-Age", "86400")
	}
	w.WriteHeader(http.StatusNoContent)
}

// parsePlayPath splits /APP/NAME.flv into a stream key. It answers the
// HTTP status to send when the path is not a valid stream.
func parsePlayPath(app, file string) (streamKey, int) {
	name, ok := strings.CutSuffix(file, ".flv")
	if !ok {
		return streamKey{}, http.StatusNotFound
	}
	if !validName(app) || !validName(name) {
		return streamKey{}, http.StatusBadRequest
	}
	return streamKey{app, name}, 0
}

// serveFLV plays a stream over HTTP-FLV, or over WebSocket-FLV when the
// request asks to upgrade. Both take over the connection, so that the
// player's writer can send everything queued in one writev, with no
// chunked-encoding copy in between.
func (s *httpServer) serveFLV(w http.ResponseWriter, r *http.Request) {
	key, status := parsePlayPath(r.PathValue("app"), r.PathValue("file"))
	if status != 0 {
		http.Error(w, http.StatusText(status), status)
		return
	}
	ws := headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
	var accept string
	if ws {
		var err error
		if accept, err = wsAcceptKey(r); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	rc := http.NewResponseController(w)
	nc, brw, err := rc.Hijack()
	if err != nil {
		http.Error(w, "cannot take over the connection", http.StatusInternalServerError)
		return
	}
	if !s.track(nc) {
		nc.Close()
		return
	}
	defer s.untrack(nc)
	nc.SetDeadline(time.Time{}) // the server's read/write timeouts are for requests, not streams

	var resp strings.Builder
	if ws {
		// RFC 6455 §4.2.2: the server's opening handshake.
		resp.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")
		resp.WriteString("Sec-WebSocket-Accept: " + accept + "\r\n")
	} else {
		// No Content-Length and no chunking: the body ends when the stream does.
		resp.WriteString("HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\nCache-Control: no-cache, no-store\r\nConnection: close\r\n")
	}
	if s.cfg.AllowOrigin != "" {
		resp.WriteString("Access-Control-Allow-Origin: " + s.cfg.AllowOrigin + "\r\n")
	}
	resp.WriteString("\r\n")
	nc.SetWriteDeadline(time.Now().Add(s.cfg.PingTimeout))
	if _, err := io.WriteString(nc, resp.String()); err != nil || r.Method == http.MethodHead {
		nc.Close()
		return
	}
	proto := "http"
	if ws {
		proto = "ws"
	}
	p := &flvPlayer{
		srv:   s,
		nc:    nc,
		br:    brw.Reader,
		ws:    ws,
		start: time.Now(),
		log: s.log.With("conn", newClientID(), "proto", proto, "remote", nc.RemoteAddr().String(),
			"app", key.App, "stream", key.Name),
	}
	info := clientInfo{ID: newClientID(), IP: remoteIP(nc), Protocol: proto, Created: p.start, Query: r.URL.RawQuery}
	p.play(key, info)
}

func (s *httpServer) track(nc net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[nc] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *httpServer) untrack(nc net.Conn) {
	s.mu.Lock()
	delete(s.conns, nc)
	s.mu.Unlock()
	s.wg.Done()
}

// closeAll closes the hijacked connections, which http.Server.Shutdown
// does not know about.
func (s *httpServer) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for nc := range s.conns {
		nc.Close()
	}
}

func (s *httpServer) wait() { s.wg.Wait() }

// flvPlayer is one HTTP-FLV or WS-FLV viewer on a hijacked connection.
type flvPlayer struct {
	srv      *httpServer
	nc       net.Conn
	br       *bufio.Reader
	ws       bool
	log      *slog.Logger
	start    time.Time
	wmu      sync.Mutex // the WS reader answers pings while the writer sends media
	bytesIn  atomic.Uint64
	bytesOut atomic.Uint64
	hdr      [10]byte
	bufs     net.Buffers
}

func (p *flvPlayer) play(key streamKey, info clientInfo) {
	p.log.Info("play", "query", info.Query)
	sub := p.srv.hub.subscribe(key, info, formatFLV)
	readErr := make(chan error, 1)
	go func() {
		// The client sends nothing but WebSocket control frames; a read
		// error or a close frame means it has gone.
		var err error
		if p.ws {
			err = p.wsReadLoop()
		} else {
			var n int64
			n, err = io.Copy(io.Discard, p.br)
			p.bytesIn.Add(uint64(n))
			if err == nil {
				err = io.EOF
			}
		}
		readErr <- err
		p.srv.hub.unsubscribe(sub)
	}()
	err := sub.run(p.write)
	if errors.Is(err, errSubscriptionEnded) {
		select {
		case err = <-readErr:
		default:
			err = errors.New("stream ended")
		}
	}
	if p.ws {
		p.wsWrite(wsOpClose, binary.BigEndian.AppendUint16(nil, 1000)) // RFC 6455 §7.4.1: normal closure
	}
	p.nc.Close()
	p.srv.hub.unsubscribe(sub)
	p.log.Info("close", "reason", closeReason(err), "bytes_in", p.bytesIn.Load(), "bytes_out", p.bytesOut.Load(),
		"drops", sub.drops.Load(), "duration", time.Since(p.start).Round(time.Millisecond))
}

// write sends one batch: as is over HTTP, as one binary frame over WS.
func (p *flvPlayer) write(bufs *net.Buffers) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.nc.SetWriteDeadline(time.Now().Add(p.srv.cfg.PingTimeout))
	if p.ws {
		var n int
		for _, b := range *bufs {
			n += len(b)
		}
		p.bufs = append(append(p.bufs[:0], appendWSHeader(p.hdr[:0], wsOpBinary, n)), *bufs...)
		bufs = &p.bufs
	}
	n, err := bufs.WriteTo(p.nc)
	p.bytesOut.Add(uint64(n))
	return err
}

// ---- WebSocket (RFC 6455) ----

const (
	wsOpContinuation = 0x0
	wsOpText         = 0x1
	wsOpBinary       = 0x2
	wsOpClose        = 0x8
	wsOpPing         = 0x9
	wsOpPong         = 0xA
	wsMaxClientFrame = 64 << 10 // players send control frames only
)

var (
	errWSProtocol = errors.New("websocket: protocol error")
	errWSClosed   = errors.New("websocket: closed by peer")
)

// headerHasToken reports whether a comma-separated header has token,
// case-insensitively (RFC 9110 §5.6.1).
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// wsAcceptKey checks the client's opening handshake (RFC 6455 §4.2.1) and
// computes Sec-WebSocket-Accept (§4.2.2 step 5.4).
func wsAcceptKey(r *http.Request) (string, error) {
	if r.Header.Get("Sec-WebSocket-Version") != "13" {
		return "", fmt.Errorf("%w: Sec-WebSocket-Version must be 13", errWSProtocol)
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	if raw, err := base64.StdEncoding.DecodeString(key); err != nil || len(raw) != 16 {
		return "", fmt.Errorf("%w: bad Sec-WebSocket-Key", errWSProtocol)
	}
	return wsAccept(key), nil
}

func wsAccept(key string) string {
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	return base64.StdEncoding.EncodeToString(h[:])
}

// appendWSHeader writes an unmasked server frame header (§5.2) for a
// final frame of n payload bytes.
func appendWSHeader(dst []byte, opcode byte, n int) []byte {
	dst = append(dst, 0x80|opcode) // FIN, no RSV bits
	switch {
	case n < 126:
		return append(dst, byte(n))
	case n <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(dst, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(dst, 127), uint64(n))
	}
}

// wsFrame is one frame read from a client, unmasked.
type wsFrame struct {
	fin     bool
	opcode  byte
	payload []byte
}

// readWSFrame reads one client frame (§5.2). Client frames must be masked
// (§5.1); control frames must be final and at most 125 bytes (§5.5).
func readWSFrame(r io.Reader, max int) (wsFrame, error) {
	var h [14]byte
	if _, err := io.ReadFull(r, h[:2]); err != nil {
		return wsFrame{}, err
	}
	f := wsFrame{fin: h[0]&0x80 != 0, opcode: h[0] & 0x0F}
	if h[0]&0x70 != 0 {
		return f, fmt.Errorf("%w: RSV bits set without an extension", errWSProtocol)
	}
	if h[1]&0x80 == 0 {
		return f, fmt.Errorf("%w: unmasked client frame", errWSProtocol)
	}
	var n uint64
	switch l := h[1] & 0x7F; l {
	case 126:
		if _, err := io.ReadFull(r, h[2:4]); err != nil {
			return f, err
		}
		n = uint64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		if _, err := io.ReadFull(r, h[2:10]); err != nil {
			return f, err
		}
		n = binary.BigEndian.Uint64(h[2:10])
	default:
		n = uint64(l)
	}
	switch f.opcode {
	case wsOpClose, wsOpPing, wsOpPong:
		if !f.fin || n > 125 {
			return f, fmt.Errorf("%w: bad control frame", errWSProtocol)
		}
	case wsOpContinuation, wsOpText, wsOpBinary:
	default:
		return f, fmt.Errorf("%w: unknown opcode %d", errWSProtocol, f.opcode)
	}
	if n > uint64(max) {
		return f, fmt.Errorf("%w: frame of %d bytes over limit %d", errWSProtocol, n, max)
	}
	var mask [4]byte
	if _, err := io.ReadFull(r, mask[:]); err != nil {
		return f, err
	}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(r, f.payload); err != nil {
		return f, err
	}
	for i := range f.payload {
		f.payload[i] ^= mask[i%4]
	}
	return f, nil
}

// wsReadLoop answers pings and a close frame, and ignores data, until the
// client goes.
func (p *flvPlayer) wsReadLoop() error {
	for {
		f, err := readWSFrame(p.br, wsMaxClientFrame)
		if err != nil {
			if errors.Is(err, errWSProtocol) {
				p.wsWrite(wsOpClose, binary.BigEndian.AppendUint16(nil, 1002)) // §7.4.1: protocol error
			}
			return err
		}
		p.bytesIn.Add(uint64(len(f.payload)) + 6)
		switch f.opcode {
		case wsOpPing:
			if err := p.wsWrite(wsOpPong, f.payload); err != nil {
				return err
			}
		case wsOpClose:
			return errWSClosed
		}
	}
}

func (p *flvPlayer) wsWrite(opcode byte, payload []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	p.nc.SetWriteDeadline(time.Now().Add(p.srv.cfg.PingTimeout))
	_, err := p.nc.Write(append(appendWSHeader(nil, opcode, len(payload)), payload...))
	return err
}

// ---- API ----

// apiStreams answers GET /api/streams in NMS v2's shape:
// {"APP":{"NAME":{"publisher":{...}|null,"subscribers":[...]}}}.
func (s *httpServer) apiStreams(w http.ResponseWriter, r *http.Request) {
	out := map[string]map[string]any{}
	for _, st := range s.hub.snapshot() {
		if out[st.Key.App] == nil {
			out[st.Key.App] = map[string]any{}
		}
		var pub any
		if p := st.Publisher; p != nil {
			pub = map[string]any{
				"app": st.Key.App, "stream": st.Key.Name, "clientId": p.ID,
				"connectCreated": p.Created.UTC().Format(time.RFC3339Nano), "bytes": p.Bytes, "ip": p.IP,
				"audio": st.Audio, "video": st.Video,
			}
		}
		subs := []any{}
		for _, c := range st.Subscribers {
			subs = append(subs, map[string]any{
				"app": st.Key.App, "stream": st.Key.Name, "clientId": c.ID,
				"connectCreated": c.Created.UTC().Format(time.RFC3339Nano), "bytes": c.Bytes, "ip": c.IP,
				"protocol": c.Protocol, "drops": c.Drops,
			})
		}
		out[st.Key.App][st.Key.Name] = map[string]any{"publisher": pub, "subscribers": subs}
	}
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
