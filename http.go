package main

// HTTP: HTTP-FLV and WebSocket-FLV players (RFC 6455 on the standard
// library), the JSON API and the embedded admin page.

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "embed"
)

//go:embed admin.html
var adminHTML []byte

// version is reported by /api/server.
const version = "gms 0.1"

type httpServer struct {
	cfg      *config
	hub      *hub
	log      *slog.Logger
	started  time.Time
	rtmpPort int // for the admin page's play URLs
	// connLimits is shared by all listeners; tests look at it.
	connLimits *connLimiter

	cpuMu   sync.Mutex // guards the CPU load sample
	cpuAt   time.Time
	cpuSecs float64
	load    float64

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // hijacked player connections
	closed bool
	wg     sync.WaitGroup
}

func newHTTPServer(cfg *config, h *hub, log *slog.Logger) *httpServer {
	return &httpServer{cfg: cfg, hub: h, log: log, conns: map[net.Conn]struct{}{}, started: time.Now()}
}

// handler builds the HTTP routes.
func (s *httpServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/admin/", http.StatusFound)
	})
	mux.HandleFunc("GET /admin/{$}", s.guard(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(adminHTML)
	}))
	s.apiRoutes(mux)
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
	proto := protoHTTP
	if ws {
		proto = protoWS
	}
	info := clientInfo{ID: newClientID(), IP: hostOf(r.RemoteAddr), Protocol: protoNames[proto], Created: time.Now(), Query: r.URL.RawQuery}
	if err := s.hub.authorize("play", key, info); err != nil {
		s.log.Info("play refused", "proto", info.Protocol, "remote", r.RemoteAddr, "stream", key.String(), "reason", err)
		http.Error(w, err.Error(), http.StatusForbidden)
		return
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
		s.untrack(nc)
		return
	}
	// Whatever the client sent after its request is in net/http's reader;
	// keep those bytes and read the rest from the connection itself.
	var in io.Reader = nc
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ := brw.Reader.Peek(n)
		in = io.MultiReader(bytes.NewReader(bytes.Clone(early)), nc)
	}
	p := &flvPlayer{srv: s, nc: nc, in: in, ws: ws, start: time.Now(),
		out: newSink(nc, s.cfg.PingTimeout, ws, &s.hub.counters.bytesOut)}
	p.log = s.log.With("conn", info.ID, "proto", info.Protocol, "remote", nc.RemoteAddr().String(), "app", key.App, "stream", key.Name)
	// The player gets a goroutine of its own, so that this handler returns
	// and net/http frees what it holds per request (buffers, a deep stack)
	// for the viewer's whole life.
	go func() {
		defer s.untrack(nc)
		counters := &s.hub.counters
		counters.accepted[proto].Add(1)
		counters.active[proto].Add(1)
		defer counters.active[proto].Add(-1)
		p.play(key, info)
	}()
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
	srv       *httpServer
	nc        net.Conn
	in        io.Reader // what the client sends
	ws        bool
	log       *slog.Logger
	start     time.Time
	out       *sink       // the WS reader answers pings while media goes out
	closeSent atomic.Bool // a WS Close frame has gone out
	bytesIn   atomic.Uint64
}

func (p *flvPlayer) play(key streamKey, info clientInfo) {
	p.log.Info("play", "query", info.Query)
	sub := p.srv.hub.subscribe(key, info, formatFLV, func() { p.nc.Close() })
	readErr := make(chan error, 1)
	go func() {
		// The client sends nothing but WebSocket control frames; a read
		// error or a close frame means it has gone.
		var err error
		if p.ws {
			err = p.wsReadLoop()
		} else {
			var buf [64]byte // small: an HTTP-FLV client sends nothing more
			for err == nil {
				var n int
				n, err = p.in.Read(buf[:])
				p.bytesIn.Add(uint64(n))
			}
		}
		readErr <- err
		p.srv.hub.unsubscribe(sub)
	}()
	err := sub.serve(p.out)
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
	p.log.Info("close", "reason", closeReason(err), "bytes_in", p.bytesIn.Load(), "bytes_out", p.out.bytesOut.Load(),
		"drops", sub.drops.Load(), "duration", time.Since(p.start).Round(time.Millisecond))
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
		f, err := readWSFrame(p.in, wsMaxClientFrame)
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
	// §5.5.1: nothing, not even another Close, follows a Close.
	if opcode == wsOpClose && !p.closeSent.CompareAndSwap(false, true) {
		return nil
	}
	return p.out.write(append(appendWSHeader(nil, opcode, len(payload)), payload...))
}

// ---- API ----

// apiRoutes adds the JSON API (NMS v2's routes and shapes, plus more keys)
// and /metrics.
func (s *httpServer) apiRoutes(mux *http.ServeMux) {
	if !s.cfg.API {
		return
	}
	mux.HandleFunc("GET /api/streams", s.guard(s.apiStreams))
	mux.HandleFunc("GET /api/streams/{app}/{name}", s.guard(s.apiStream))
	mux.HandleFunc("DELETE /api/streams/{app}/{name}", s.guard(s.apiKickStream))
	mux.HandleFunc("DELETE /api/clients/{id}", s.guard(s.apiKickClient))
	mux.HandleFunc("GET /api/server", s.guard(s.apiServer))
	mux.HandleFunc("GET /api/events", s.guard(s.apiEvents))
	mux.HandleFunc("GET /metrics", s.guard(s.metrics))
}

// guard requires HTTP Basic auth (RFC 7617) when the config sets API
// credentials, comparing in constant time, and answers 401 with the realm
// NMS uses otherwise.
func (s *httpServer) guard(h http.HandlerFunc) http.HandlerFunc {
	if s.cfg.APIUser == "" {
		return h
	}
	return func(w http.ResponseWriter, r *http.Request) {
		user, pass, _ := r.BasicAuth()
		userOK := subtle.ConstantTimeCompare([]byte(user), []byte(s.cfg.APIUser))
		passOK := subtle.ConstantTimeCompare([]byte(pass), []byte(s.cfg.APIPass))
		if userOK&passOK != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="Authorization Required"`)
			http.Error(w, "Unauthorized", http.StatusUnauthorized)
			return
		}
		h(w, r)
	}
}

func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// apiClient is one publisher or subscriber in NMS's shape, plus
// protocol, drops and queue depth.
func apiClient(key streamKey, c clientSnapshot) map[string]any {
	return map[string]any{
		"app": key.App, "stream": key.Name, "clientId": c.ID, "connectCreated": isoTime(c.Created),
		"bytes": c.Bytes, "ip": c.IP, "protocol": c.Protocol,
		"drops": c.Drops, "queue": c.Queue, "queueBytes": c.QueueBytes,
	}
}

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
			m := apiClient(st.Key, *p)
			delete(m, "drops")
			delete(m, "queue")
			delete(m, "queueBytes")
			m["audio"], m["video"] = st.Audio, st.Video
			if st.Audio == nil {
				m["audio"] = nil
			}
			if st.Video == nil {
				m["video"] = nil
			}
			m["query"] = p.Query
			m["uptime"] = math.Round(time.Since(st.Started).Seconds()*10) / 10
			m["bitrateIn"], m["bitrateIn30"] = st.BitrateIn, st.BitrateIn30
			m["framesIn"] = st.FramesIn
			pub = m
		}
		subs := []any{}
		viewers := map[string]int{"rtmp": 0, "http": 0, "ws": 0}
		for _, c := range st.Subscribers {
			subs = append(subs, apiClient(st.Key, c))
			viewers[c.Protocol]++
		}
		out[st.Key.App][st.Key.Name] = map[string]any{
			"publisher": pub, "subscribers": subs,
			"viewers": viewers, "bitrateOut": st.BitrateOut, "bitrateOut30": st.BitrateOut30,
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// apiStream answers GET /api/streams/APP/NAME like NMS v2:
// {"isLive","viewers","duration","bitrate","startTime","arguments"}.
func (s *httpServer) apiStream(w http.ResponseWriter, r *http.Request) {
	key := streamKey{r.PathValue("app"), r.PathValue("name")}
	var st streamSnapshot
	for _, x := range s.hub.snapshot() {
		if x.Key == key {
			st = x
		}
	}
	out := map[string]any{"isLive": false, "viewers": len(st.Subscribers), "duration": 0, "bitrate": 0,
		"startTime": nil, "arguments": map[string]string{}}
	if p := st.Publisher; p != nil {
		args := map[string]string{}
		q, _ := url.ParseQuery(p.Query)
		for k := range q {
			args[k] = q.Get(k)
		}
		out["isLive"] = true
		out["duration"] = int(time.Since(st.Started).Seconds())
		out["bitrate"] = st.BitrateIn
		out["startTime"] = isoTime(st.Started)
		out["arguments"] = args
		out["video"], out["audio"] = st.Video, st.Audio
		out["bitrateIn30"], out["bitrateOut"], out["bitrateOut30"] = st.BitrateIn30, st.BitrateOut, st.BitrateOut30
	}
	writeJSON(w, http.StatusOK, out)
}

// apiKickStream disconnects a stream's publisher (NMS v2's DELETE).
func (s *httpServer) apiKickStream(w http.ResponseWriter, r *http.Request) {
	if !s.hub.kickStream(streamKey{r.PathValue("app"), r.PathValue("name")}) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "stream not found"})
		return
	}
	writeJSON(w, http.StatusOK, "ok")
}

// apiKickClient disconnects one publisher or viewer by its client id.
func (s *httpServer) apiKickClient(w http.ResponseWriter, r *http.Request) {
	if !s.hub.kickClient(r.PathValue("id")) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "client not found"})
		return
	}
	writeJSON(w, http.StatusOK, "ok")
}

// apiServer answers GET /api/server with NMS v2's keys (including its
// "totle" typo, which admin scripts read) and Go runtime figures.
func (s *httpServer) apiServer(w http.ResponseWriter, r *http.Request) {
	c := &s.hub.counters
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	memTotal, memFree := systemMemory()
	cpuSecs := processCPUSeconds()
	clients := map[string]any{"accepted": uint64(0), "active": int64(0), "idle": 0}
	var accepted uint64
	var active int64
	for i, name := range protoNames {
		accepted += c.accepted[i].Load()
		active += c.active[i].Load()
		clients[name] = c.active[i].Load()
	}
	clients["accepted"], clients["active"] = accepted, active
	uptime := time.Since(s.started).Seconds()
	writeJSON(w, http.StatusOK, map[string]any{
		"os":  map[string]any{"arch": runtime.GOARCH, "platform": runtime.GOOS, "release": osRelease()},
		"cpu": map[string]any{"num": runtime.NumCPU(), "load": s.cpuLoad(cpuSecs), "model": cpuModel(), "speed": 0},
		"mem": map[string]any{"totle": memTotal, "free": memFree},
		"net": map[string]any{"inbytes": c.bytesIn.Load(), "outbytes": c.bytesOut.Load()},
		"nodejs": map[string]any{"uptime": int(uptime), "version": runtime.Version(),
			"mem": map[string]any{"rss": processRSS(), "heapTotal": ms.HeapSys, "heapUsed": ms.HeapAlloc}},
		"go": map[string]any{"version": runtime.Version(), "goroutines": runtime.NumGoroutine(),
			"heapAlloc": ms.HeapAlloc, "heapInuse": ms.HeapInuse, "heapSys": ms.HeapSys, "numGC": ms.NumGC,
			"gcPauseTotalNs": ms.PauseTotalNs},
		"process":  map[string]any{"cpuSeconds": cpuSecs, "rss": processRSS(), "uptime": uptime},
		"clients":  clients,
		"streams":  len(s.hub.snapshot()),
		"version":  version,
		"rtmpPort": s.rtmpPort,
	})
}

// cpuLoad is the process's share of all cores since the last call (at
// least a second apart), as a fraction from 0 to 1.
func (s *httpServer) cpuLoad(cpuSecs float64) float64 {
	s.cpuMu.Lock()
	defer s.cpuMu.Unlock()
	now := time.Now()
	if s.cpuAt.IsZero() || now.Sub(s.cpuAt) >= time.Second {
		if !s.cpuAt.IsZero() {
			s.load = (cpuSecs - s.cpuSecs) / now.Sub(s.cpuAt).Seconds() / float64(runtime.NumCPU())
		}
		s.cpuAt, s.cpuSecs = now, cpuSecs
	}
	return math.Round(s.load*1000) / 1000
}

// apiEvents streams lifecycle events as Server-Sent Events (HTML Living
// Standard §9.2): publish, unpublish, play, stop and kick.
func (s *httpServer) apiEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": gms events\n\n")
	if rc.Flush() != nil {
		return
	}
	events, stop := s.hub.watch()
	defer stop()
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		rc.SetWriteDeadline(time.Now().Add(s.cfg.PingTimeout))
		select {
		case <-r.Context().Done():
			return
		case <-keepalive.C:
			fmt.Fprint(w, ": keepalive\n\n")
		case ev := <-events:
			data, _ := json.Marshal(map[string]any{"app": ev.Key.App, "stream": ev.Key.Name, "clientId": ev.Client.ID,
				"ip": ev.Client.IP, "protocol": ev.Client.Protocol, "query": ev.Client.Query, "reason": ev.Reason,
				"time": isoTime(ev.Time)})
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.Type, data)
		}
		if rc.Flush() != nil {
			return
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// metrics answers GET /metrics in the Prometheus text format (version
// 0.0.4): counters and gauges of the whole server.
func (s *httpServer) metrics(w http.ResponseWriter, r *http.Request) {
	c := &s.hub.counters
	snaps := s.hub.snapshot()
	var b strings.Builder
	metric := func(name, typ, help string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	metric("gms_connections_accepted_total", "counter", "Connections accepted, by protocol.")
	for i, p := range protoNames {
		fmt.Fprintf(&b, "gms_connections_accepted_total{protocol=%q} %d\n", p, c.accepted[i].Load())
	}
	metric("gms_connections_active", "gauge", "Open connections, by protocol.")
	for i, p := range protoNames {
		fmt.Fprintf(&b, "gms_connections_active{protocol=%q} %d\n", p, c.active[i].Load())
	}
	live, viewers := 0, map[string]int{}
	for _, st := range snaps {
		if st.Publisher != nil {
			live++
		}
		for _, sub := range st.Subscribers {
			viewers[sub.Protocol]++
		}
	}
	metric("gms_streams", "gauge", "Streams being published.")
	fmt.Fprintf(&b, "gms_streams %d\n", live)
	metric("gms_viewers", "gauge", "Players connected, by protocol.")
	for _, p := range protoNames {
		fmt.Fprintf(&b, "gms_viewers{protocol=%q} %d\n", p, viewers[p])
	}
	metric("gms_received_bytes_total", "counter", "Bytes received from RTMP peers.")
	fmt.Fprintf(&b, "gms_received_bytes_total %d\n", c.bytesIn.Load())
	metric("gms_sent_bytes_total", "counter", "Bytes sent to players and peers.")
	fmt.Fprintf(&b, "gms_sent_bytes_total %d\n", c.bytesOut.Load())
	metric("gms_dropped_frames_total", "counter", "Frames skipped for viewers that could not keep up.")
	fmt.Fprintf(&b, "gms_dropped_frames_total %d\n", c.drops.Load())
	metric("gms_kicks_total", "counter", "Clients disconnected by the API or for being too slow.")
	fmt.Fprintf(&b, "gms_kicks_total %d\n", c.kicks.Load())
	metric("gms_socket_full_total", "counter", "Writes to a viewer that its socket could not take whole (it reads slower than the stream).")
	fmt.Fprintf(&b, "gms_socket_full_total %d\n", c.socketFull.Load())
	metric("gms_auth_failures_total", "counter", "Refused signatures, by protocol.")
	for i, p := range protoNames {
		fmt.Fprintf(&b, "gms_auth_failures_total{protocol=%q} %d\n", p, c.authFailures[i].Load())
	}
	metric("gms_hook_rejections_total", "counter", "Publishers and players refused by a hook.")
	fmt.Fprintf(&b, "gms_hook_rejections_total %d\n", c.hookRejects.Load())
	metric("gms_handshake_failures_total", "counter", "RTMP handshakes that failed.")
	fmt.Fprintf(&b, "gms_handshake_failures_total %d\n", c.handshakeFailures.Load())
	metric("gms_goroutines", "gauge", "Goroutines.")
	fmt.Fprintf(&b, "gms_goroutines %d\n", runtime.NumGoroutine())
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	metric("gms_heap_inuse_bytes", "gauge", "Go heap in use.")
	fmt.Fprintf(&b, "gms_heap_inuse_bytes %d\n", ms.HeapInuse)
	metric("gms_process_cpu_seconds_total", "counter", "CPU time of the process.")
	fmt.Fprintf(&b, "gms_process_cpu_seconds_total %g\n", processCPUSeconds())
	metric("gms_process_resident_memory_bytes", "gauge", "Resident memory of the process.")
	fmt.Fprintf(&b, "gms_process_resident_memory_bytes %d\n", processRSS())
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	io.WriteString(w, b.String())
}

// ---- Process and system figures (Linux /proc; zero elsewhere) ----

// processCPUSeconds is user+system CPU time from /proc/self/stat
// (fields 14 and 15, in clock ticks of 1/100 s on Linux).
func processCPUSeconds() float64 {
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; count from after it.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100
}

// processRSS is the resident set size from /proc/self/statm.
func processRSS() int64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// systemMemory is MemTotal and MemAvailable from /proc/meminfo, in bytes.
func systemMemory() (total, free int64) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, 0
	}
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "MemTotal:":
			total = kb << 10
		case "MemAvailable:":
			free = kb << 10
		}
	}
	return total, free
}

func osRelease() string {
	data, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(data))
}

func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for line := range strings.Lines(string(data)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// ---- Signed URLs and hooks ----

var (
	errSignMissing = errors.New("signature missing")
	errSignExpired = errors.New("signature expired")
	errSignInvalid = errors.New("signature invalid")
)

// checkSign verifies NMS's signed-URL scheme: the query's sign is
// EXPIRES-HASH, EXPIRES a unix time in seconds not yet past, and HASH the
// lowercase hex md5 of "/APP/NAME-EXPIRES-SECRET". The hash is compared in
// constant time.
func checkSign(key streamKey, query, secret string, now time.Time) error {
	q, _ := url.ParseQuery(query)
	sign := q.Get("sign")
	if sign == "" {
		return errSignMissing
	}
	expires, hash, ok := strings.Cut(sign, "-")
	exp, err := strconv.ParseInt(expires, 10, 64)
	if !ok || err != nil {
		return errSignInvalid
	}
	sum := md5.Sum([]byte(key.String() + "-" + expires + "-" + secret))
	want := hex.EncodeToString(sum[:])
	if subtle.ConstantTimeCompare([]byte(hash), []byte(want)) != 1 {
		return errSignInvalid
	}
	if exp < now.Unix() {
		return errSignExpired
	}
	return nil
}

// hooks posts lifecycle events to the URLs the config names.
type hooks struct {
	cfg    *config
	log    *slog.Logger
	client *http.Client
}

func newHooks(cfg *config, log *slog.Logger) *hooks {
	return &hooks{cfg: cfg, log: log, client: &http.Client{Timeout: cfg.HookTimeout}}
}

var errHookRefused = errors.New("refused by hook")

// hookBody is the JSON each hook gets.
type hookBody struct {
	Action   string `json:"action"`
	ID       string `json:"id"`
	IP       string `json:"ip"`
	App      string `json:"app"`
	Name     string `json:"name"`
	Query    string `json:"query"`
	Protocol string `json:"protocol"`
	Created  string `json:"connectCreated"`
	Time     string `json:"time"`
	Bytes    uint64 `json:"bytes,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

// post sends one event; it returns an error unless the answer is 2xx.
func (hk *hooks) post(ctx context.Context, hookURL string, body hookBody) error {
	data, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, "POST", hookURL, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := hk.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("%w: %s answered %s", errHookRefused, hookURL, resp.Status)
	}
	return nil
}

// allow asks the publish or play hook, if there is one, whether a client
// may go on. No answer in time counts as a refusal: a hook exists to check.
func (hk *hooks) allow(action string, key streamKey, c clientInfo) error {
	hookURL := hk.cfg.OnPublish
	if action == "play" {
		hookURL = hk.cfg.OnPlay
	}
	if hookURL == "" {
		return nil
	}
	return hk.post(context.Background(), hookURL, newHookBody(action, key, c, time.Now()))
}

func newHookBody(action string, key streamKey, c clientInfo, at time.Time) hookBody {
	return hookBody{Action: action, ID: c.ID, IP: c.IP, App: key.App, Name: key.Name, Query: c.Query,
		Protocol: c.Protocol, Created: isoTime(c.Created), Time: isoTime(at)}
}

// notify posts unpublish and stop events as they happen, until events closes.
func (hk *hooks) notify(events <-chan hubEvent) {
	for ev := range events {
		hookURL := map[string]string{"unpublish": hk.cfg.OnUnpublish, "stop": hk.cfg.OnStop}[ev.Type]
		if hookURL == "" {
			continue
		}
		body := newHookBody(ev.Type, ev.Key, ev.Client, ev.Time)
		body.Bytes, body.Reason = ev.Bytes, ev.Reason
		if err := hk.post(context.Background(), hookURL, body); err != nil {
			hk.log.Warn("hook failed", "action", ev.Type, "err", err)
		}
	}
}
