package main

// HTTP: the routes, CORS, and HTTP-FLV and WebSocket-FLV players on
// hijacked connections. The API is in api.go, the WebSocket codec in
// websocket.go, the admin page is admin.html.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "embed"
)

//go:embed admin.html
var adminHTML []byte

// version is reported by /api/server: what gms -version prints.
var version = versionString()

type httpServer struct {
	cfg      *config
	hub      *hub
	admit    *admission
	log      *slog.Logger
	started  time.Time
	rtmpPort int // for the admin page's play URLs
	// bodyTimeout bounds how long a request body may take to arrive
	// (requestHeadTimeout; shorter in tests).
	bodyTimeout time.Duration
	// connLimits is shared by all listeners; tests look at it.
	connLimits *connLimiter
	// players caps players at their share of -max-conns (nil: no limit);
	// shared with the RTMP server.
	players *playerSlots
	hls     *hlsServer // HLS muxers (hls.go)

	cpu    cpuSampler // for /api/server
	rec    *recorder  // for /api/recordings; nil without -record
	relays *relays    // for /api/relay

	mu     sync.Mutex
	conns  map[*flvPlayer]struct{} // players on hijacked connections
	closed bool
	wg     sync.WaitGroup
	// logging counts the requests inside accessLog, so that wait
	// returns after their lines are written.
	logging sync.WaitGroup
}

func newHTTPServer(cfg *config, h *hub, admit *admission, log *slog.Logger) *httpServer {
	return &httpServer{cfg: cfg, hub: h, admit: admit, log: log, conns: map[*flvPlayer]struct{}{}, started: time.Now(),
		hls: newHLSServer(cfg, h, log), bodyTimeout: requestHeadTimeout}
}

// handler builds the HTTP routes.
func (s *httpServer) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/admin/", http.StatusFound)
	})
	mux.HandleFunc("GET /admin/{$}", s.guard(s.adminPage))
	mux.HandleFunc("GET /api/health", s.health)
	s.apiRoutes(mux)
	mux.HandleFunc("GET /{app}/{file}", s.serveFLV)
	mux.HandleFunc("GET /{app}/{name}/{file}", s.serveHLS)
	return s.accessLog(s.deadlines(s.cors(mux)))
}

const (
	// requestHeadTimeout bounds the arrival of a request's head
	// (http.Server.ReadHeaderTimeout) and, from its end, of its body.
	requestHeadTimeout = 10 * time.Second
	// maxIgnoredBody is the longest body taken on a route that reads
	// none (every route but POST's, which bound their own).
	maxIgnoredBody = 16 << 10
)

// deadlines bounds what a request may take of its connection's time: a
// client that takes nothing of an answer for -ping-timeout is dropped, as
// a silent player is (deadlineWriter), and a request body must come in
// time, as ReadHeaderTimeout bounds heads.
//
// net/http reads whatever body a handler left (up to 256 KiB, so that
// the connection can serve the next request) before it writes the
// answer, and again when the handler returns, with no deadline: a client
// that announced a body and sent it slowly, or never, held its
// connection and goroutine for good. http.Server.ReadTimeout cannot
// bound it instead: its deadline would also end the long requests
// (blocking playlist reloads, SSE) once their bodies were read.
//
// So a request with a body gets a read deadline. POST handlers read their
// own (MaxBytesReader); on any other route the body is read and dropped
// here, at most maxIgnoredBody of it, and the deadline lifted before the
// handler runs: 408 when it does not come in time, 413 when too long,
// both closing the connection (RFC 9110 §15.5.9, §15.5.14).
func (s *httpServer) deadlines(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		// Cleared first: the deadline the connection's last answer left
		// is not this one's.
		rc.SetWriteDeadline(time.Time{})
		w = &deadlineWriter{ResponseWriter: w, rc: rc, timeout: s.cfg.PingTimeout}
		if r.ContentLength == 0 { // no body: a length of 0, or none and not chunked
			next.ServeHTTP(w, r)
			return
		}
		rc.SetReadDeadline(time.Now().Add(s.bodyTimeout))
		if r.Method == http.MethodPost {
			next.ServeHTTP(w, r)
			return
		}
		n, err := io.Copy(io.Discard, io.LimitReader(r.Body, maxIgnoredBody+1))
		switch {
		case err != nil:
			w.Header().Set("Connection", "close")
			http.Error(w, "Request Timeout: the body did not come in time", http.StatusRequestTimeout)
			return
		case n > maxIgnoredBody:
			w.Header().Set("Connection", "close")
			http.Error(w, "Request Entity Too Large: this route takes no body", http.StatusRequestEntityTooLarge)
			return
		}
		rc.SetReadDeadline(time.Time{})
		next.ServeHTTP(w, r)
	})
}

// accessLog writes one debug line per request when the handler returns:
// method, path, status, body bytes, duration and remote address. It logs
// the path without the query, which can carry credentials (sign=, hook
// tokens). A play request (HTTP-FLV, WS-FLV) takes over its connection:
// its line says hijacked, with the status of the head serveFLV sent (200
// or 101) and no bytes; the player's own lines tell the rest.
func (s *httpServer) accessLog(next http.Handler) http.Handler {
	if !s.log.Enabled(context.Background(), slog.LevelDebug) {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// A hijacked player's handler outlives Shutdown's wait: wait
		// covers it up to its access line.
		s.logging.Add(1)
		defer s.logging.Done()
		start := time.Now()
		aw := &accessWriter{ResponseWriter: w}
		next.ServeHTTP(aw, r)
		status := aw.status
		switch {
		case aw.hijacked && isWebSocketUpgrade(r):
			status = http.StatusSwitchingProtocols
		case status == 0 || aw.hijacked:
			status = http.StatusOK
		}
		s.log.Debug("http request", "method", r.Method, "path", r.URL.Path, "status", status, "bytes", aw.bytes,
			"duration", time.Since(start).Round(time.Microsecond), "remote", r.RemoteAddr, "hijacked", aw.hijacked)
	})
}

// accessWriter notes what a handler answered, for accessLog.
// http.ResponseController finds the other methods through Unwrap.
type accessWriter struct {
	http.ResponseWriter
	status   int // the final status written; 0 until then
	bytes    int64
	hijacked bool
}

func (w *accessWriter) WriteHeader(code int) {
	if w.status == 0 && code >= 200 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *accessWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

func (w *accessWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	nc, brw, err := http.NewResponseController(w.ResponseWriter).Hijack()
	w.hijacked = err == nil
	return nc, brw, err
}

func (w *accessWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// adminPage serves admin.html. It may not be framed (its kick buttons
// could be clicked through a frame) and runs only its own inline script
// and style, by hash (adminCSP).
func (s *httpServer) adminPage(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", adminCSP)
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	w.Write(adminHTML)
}

// adminCSP allows the admin page only itself: its inline <script> and
// <style> by their SHA-256 (CSP Level 3 §8.3), requests to this server,
// the blob: URL of its preview's MediaSource, and this server's HLS for
// browsers that play it themselves.
var adminCSP = "default-src 'none'; script-src " + inlineHashes(adminHTML, "script") +
	"; style-src " + inlineHashes(adminHTML, "style") +
	"; connect-src 'self'; media-src 'self' blob:; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// inlineHashes lists the CSP hash sources of a page's inline <tag>
// elements.
func inlineHashes(page []byte, tag string) string {
	var srcs []string
	rest := page
	for {
		i := bytes.Index(rest, []byte("<"+tag+">"))
		if i < 0 {
			break
		}
		rest = rest[i+len(tag)+2:]
		j := bytes.Index(rest, []byte("</"+tag+">"))
		if j < 0 {
			break
		}
		sum := sha256.Sum256(rest[:j])
		srcs = append(srcs, "'sha256-"+base64.StdEncoding.EncodeToString(sum[:])+"'")
		rest = rest[j:]
	}
	if len(srcs) == 0 {
		return "'none'"
	}
	return strings.Join(srcs, " ")
}

// cors answers cross-origin requests (the Fetch standard's CORS protocol).
// Media (HTTP-FLV, WS-FLV) is for any page, as with NMS: -allow-origin.
// The API and the admin page answer only the origins -api-allow-origin
// names; a wildcard there lets other pages read, never POST or DELETE.
func (s *httpServer) cors(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		methods := "GET, HEAD, OPTIONS"
		if isControlPath(r.URL.Path) {
			origin, named := s.apiOrigin(r.Header.Get("Origin"))
			if origin != "" {
				w.Header().Set("Access-Control-Allow-Origin", origin)
				w.Header().Add("Vary", "Origin")
			}
			if named {
				// What control lets a named origin do: kicks, and
				// relays (a JSON POST is preflighted).
				methods = "GET, HEAD, POST, DELETE, OPTIONS"
			}
		} else if s.cfg.AllowOrigin != "" {
			w.Header().Set("Access-Control-Allow-Origin", s.cfg.AllowOrigin)
		}
		if r.Method == http.MethodOptions {
			s.preflight(w, r, methods)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// deadlineWriter gives each write of an answer -ping-timeout to go out.
// Without it a client that asked for something bigger than the socket
// buffers hold (an HLS segment of a few megabytes, the admin page) and
// read nothing held the request, and its connection, for good: the
// server has no WriteTimeout, which would also end SSE and blocking
// reloads. A player that takes the connection over (serveFLV) sets its
// own deadlines, as /api/events renews its own.
type deadlineWriter struct {
	http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
	return w.ResponseWriter.Write(p)
}

func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// isControlPath tells the API and admin routes from media.
func isControlPath(p string) bool {
	return p == "/" || p == "/metrics" || strings.HasPrefix(p, "/api/") || strings.HasPrefix(p, "/admin/")
}

// apiOrigin is the Access-Control-Allow-Origin for a request from origin
// to the API ("" for none), and whether -api-allow-origin names it.
func (s *httpServer) apiOrigin(origin string) (allow string, named bool) {
	if origin == "" || s.cfg.APIAllowOrigin == "" {
		return "", false
	}
	for o := range strings.SplitSeq(s.cfg.APIAllowOrigin, ",") {
		switch o = strings.TrimSpace(o); {
		case o == "*":
			allow = "*"
		case strings.EqualFold(o, origin):
			return origin, true
		}
	}
	return allow, false
}

// preflight answers CORS preflight requests, when the route allows the
// origin at all.
func (s *httpServer) preflight(w http.ResponseWriter, r *http.Request, methods string) {
	h := w.Header()
	if h.Get("Access-Control-Allow-Origin") != "" {
		h.Set("Access-Control-Allow-Methods", methods)
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
	ws := isWebSocketUpgrade(r)
	var accept string
	if ws {
		var err error
		if accept, err = wsAcceptKey(r); errors.Is(err, errWSVersion) {
			w.Header().Set("Sec-WebSocket-Version", "13")
			http.Error(w, err.Error(), http.StatusUpgradeRequired)
			return
		} else if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
	}
	proto := protoHTTP
	if ws {
		proto = protoWS
	}
	// The slot first, so that a server full of players refuses the next
	// before its signature check or hook costs anything.
	if !s.players.take(r.RemoteAddr) {
		// Connection: close, or the refused client could keep its
		// connection, and so its slot of -max-conns, as an idle keep-alive.
		w.Header().Set("Connection", "close")
		http.Error(w, errTooManyPlayers.Error(), http.StatusServiceUnavailable)
		return
	}
	slotHeld := true // until the player's goroutine takes it over
	defer func() {
		if slotHeld {
			s.players.release()
		}
	}()
	info := clientInfo{ID: newClientID(), IP: hostOf(r.RemoteAddr), Protocol: proto, Created: time.Now(), Query: r.URL.RawQuery,
		Proxied: forwarded(r)}
	// A HEAD (a probe) plays nothing: the sign tells its answer, and the
	// play hook is not asked about a viewer that never comes.
	check := s.admit.check
	if r.Method == http.MethodHead {
		check = s.admit.checkSign
	}
	if err := check(actPlay, key, info); err != nil {
		s.log.Info("play refused", "proto", info.Protocol, "remote", r.RemoteAddr, "stream", key.String(), "reason", err)
		if errors.Is(err, errDraining) {
			http.Error(w, "Service Unavailable: "+errDraining.Error(), http.StatusServiceUnavailable)
			return
		}
		http.Error(w, "Forbidden: "+refusalText, http.StatusForbidden)
		return
	}
	rc := http.NewResponseController(w)
	nc, brw, err := rc.Hijack()
	if err != nil {
		http.Error(w, "cannot take over the connection", http.StatusInternalServerError)
		return
	}
	var header func([]byte, int) []byte // each media batch is one WebSocket binary message
	if ws {
		header = wsBinaryHeader
	}
	p := &flvPlayer{srv: s, nc: nc, proto: proto, ws: ws, start: time.Now(),
		out: newSink(nc, s.cfg.PingTimeout, header, &s.hub.counters.bytesOut)}
	if !s.track(p) {
		nc.Close()
		return
	}
	nc.SetDeadline(time.Time{}) // the server's read/write timeouts are for requests, not streams

	nc.SetWriteDeadline(time.Now().Add(s.cfg.PingTimeout))
	if _, err := io.WriteString(nc, s.playResponseHead(ws, accept)); err != nil || r.Method == http.MethodHead {
		nc.Close()
		s.untrack(p)
		return
	}
	// Whatever the client sent after its request is in net/http's reader;
	// keep those bytes and read the rest from the connection itself.
	p.in = nc
	if n := brw.Reader.Buffered(); n > 0 {
		early, _ := brw.Reader.Peek(n)
		p.early = bytes.NewReader(bytes.Clone(early))
		p.in = io.MultiReader(p.early, nc)
	}
	p.log = s.log.With("conn", info.ID, "proto", info.Protocol, "remote", nc.RemoteAddr().String(), "app", key.App, "stream", key.Name)
	// The player gets a goroutine of its own, so that this handler returns
	// and net/http frees what it holds per request (buffers, a deep stack)
	// for the viewer's whole life.
	slotHeld = false
	go p.play(key, info)
}

// isWebSocketUpgrade tells a WebSocket opening handshake (RFC 6455 §4.1)
// from a plain request.
func isWebSocketUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket")
}

// playResponseHead is the status line and headers of a play response: a
// WebSocket upgrade (RFC 6455 §4.2.2), or an FLV body with no
// Content-Length and no chunking, which ends when the stream does.
func (s *httpServer) playResponseHead(ws bool, accept string) string {
	var resp strings.Builder
	if ws {
		resp.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")
		resp.WriteString("Sec-WebSocket-Accept: " + accept + "\r\n")
	} else {
		resp.WriteString("HTTP/1.1 200 OK\r\nContent-Type: video/x-flv\r\nCache-Control: no-cache, no-store\r\nConnection: close\r\n")
	}
	if s.cfg.AllowOrigin != "" {
		resp.WriteString("Access-Control-Allow-Origin: " + s.cfg.AllowOrigin + "\r\n")
	}
	resp.WriteString("\r\n")
	return resp.String()
}

func (s *httpServer) track(p *flvPlayer) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[p] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *httpServer) untrack(p *flvPlayer) {
	s.mu.Lock()
	delete(s.conns, p)
	s.mu.Unlock()
	s.wg.Done()
}

// closeAll closes the hijacked connections, which http.Server.Shutdown
// does not know about.
func (s *httpServer) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	for p := range s.conns {
		p.shutDown.Store(true)
		p.hangUp()
	}
}

// wait returns when every hijacked connection's handler has returned and
// logged.
func (s *httpServer) wait() {
	s.wg.Wait()
	s.logging.Wait()
}

// flvForm is HTTP-FLV and WS-FLV players' part in the hub: FLV tags, and
// a response that ends with the stream.
type flvForm struct{}

func (flvForm) format() outputFormat             { return formatFLV }
func (flvForm) publishNotice(streamKey) *frame   { return nil }
func (flvForm) unpublishNotice(streamKey) *frame { return nil }

// flvPlayer is one HTTP-FLV or WS-FLV viewer on a hijacked connection.
// One goroutine reads what the client sends while a flusher writes the
// media (subscriber.pump); a player with nothing to read is parked
// (idle_linux.go), and then it has no goroutine at all.
type flvPlayer struct {
	srv       *httpServer
	nc        net.Conn
	proto     protocol
	in        io.Reader     // what the client sends: nc, after what net/http read ahead
	early     *bytes.Reader // what net/http read ahead, if anything
	wsIn      *bufio.Reader
	ws        bool
	log       *slog.Logger
	start     time.Time
	out       *sink       // the WS reader answers pings while media goes out
	closeSent atomic.Bool // a WS Close frame has gone out
	bytesIn   atomic.Uint64
	sub       *subscriber
	pumped    chan error // why the writer stopped
	idle      idleWait
	woken     bool        // resumed: read once before parking again
	shutDown  atomic.Bool // closed by the server's shutdown
}

func (p *flvPlayer) play(key streamKey, info clientInfo) {
	counters := &p.srv.hub.counters
	counters.accepted[p.proto].Add(1)
	counters.active[p.proto].Add(1)
	p.log.Info("play", "query", redactQuery(info.Query))
	p.sub = p.srv.hub.subscribe(key, info, flvForm{}, p.hangUp)
	p.pumped = make(chan error, 1)
	go p.sub.pump(p.out, func(err error) {
		if p.ws {
			p.wsWrite(wsOpClose, binary.BigEndian.AppendUint16(nil, 1000)) // RFC 6455 §7.4.1: normal closure
		}
		p.hangUp() // the read ends
		p.pumped <- err
	})
	if p.ws {
		// Only to wait for a frame's first byte without a deadline; 16 is
		// the least bufio takes, and longer reads go past it.
		p.wsIn = bufio.NewReaderSize(p.in, 16)
	}
	p.read()
}

// read reads what the client sends until it has gone, then ends the
// player; or parks it, and resume reads again.
func (p *flvPlayer) read() {
	var err error
	defer func() {
		if r := recover(); r != nil {
			p.log.Error("http player panic", "panic", r)
			err = fmt.Errorf("panic: %v", r)
		}
		if !errors.Is(err, errParked) {
			p.end(err)
		}
	}()
	if p.ws {
		err = p.wsReadLoop()
		return
	}
	var buf [64]byte // small: an HTTP-FLV client sends nothing more
	for {
		if p.parks() {
			err = errParked
			return
		}
		var n int
		n, err = p.in.Read(buf[:])
		p.bytesIn.Add(uint64(n))
		if err != nil {
			return
		}
	}
}

// parks parks the player if it has nothing read ahead and was not just
// woken; if the socket has more already, it is resumed at once.
func (p *flvPlayer) parks() bool {
	if p.woken {
		p.woken = false
		return false
	}
	if p.early != nil && p.early.Len() > 0 || p.wsIn != nil && p.wsIn.Buffered() > 0 {
		return false
	}
	return idle().park(&p.idle, p.nc, p.resume)
}

func (p *flvPlayer) resume() {
	p.woken = true // there is something to read: read before parking again
	p.read()
}

// hangUp closes the connection from any goroutine; a parked player is
// woken to see it.
func (p *flvPlayer) hangUp() {
	p.nc.Close()
	idle().wake(&p.idle)
}

// end is the player's last step, once the client has gone or the
// connection was closed here.
func (p *flvPlayer) end(readErr error) {
	p.srv.hub.unsubscribe(p.sub) // the writer stops, and closes the connection
	err := <-p.pumped
	if errors.Is(err, errSubscriptionEnded) {
		// Ended by the client's going, or by the stream's end (then the
		// read failed because the connection was closed here).
		err = readErr
		switch {
		case p.shutDown.Load():
			err = net.ErrClosed // the close line says "closed by server", as RTMP's
		case errors.Is(readErr, net.ErrClosed):
			err = errors.New(string(reasonStreamEnded))
		}
	}
	p.log.Info("close", "reason", reasonOf(err), "bytes_in", p.bytesIn.Load(), "bytes_out", p.out.bytesOut.Load(),
		"drops", p.sub.drops.Load(), "duration", time.Since(p.start).Round(time.Millisecond))
	p.srv.hub.counters.active[p.proto].Add(-1)
	p.srv.players.release()
	p.srv.untrack(p)
}

// ---- WebSocket-FLV: the player's side of the connection ----

// wsReadLoop answers pings and a close frame, and ignores data, until the
// client goes.
//
// Between frames the client may be silent for as long as it likes: a
// player has nothing to say, and RFC 6455 asks for no keepalive. But once
// a frame has begun, the rest of it must come within the ping timeout, or
// the client is dropped: a header announcing 64 KiB and then nothing
// would otherwise hold this goroutine and its buffer for good.
func (p *flvPlayer) wsReadLoop() error {
	in := p.wsIn
	for {
		if p.parks() {
			return errParked
		}
		p.nc.SetReadDeadline(time.Time{})
		if _, err := in.Peek(1); err != nil {
			return err
		}
		p.nc.SetReadDeadline(time.Now().Add(p.srv.cfg.PingTimeout))
		f, err := readWSFrame(in, wsMaxClientFrame)
		if err != nil {
			switch {
			case errors.Is(err, errWSProtocol):
				p.wsWrite(wsOpClose, binary.BigEndian.AppendUint16(nil, 1002)) // §7.4.1: protocol error
			case errors.Is(err, os.ErrDeadlineExceeded):
				// §7.4.1: 1008 is the generic code for a policy violation,
				// a frame that did not finish in time being ours.
				p.wsWrite(wsOpClose, binary.BigEndian.AppendUint16(nil, 1008))
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
	return p.out.writeOwn(append(appendWSHeader(nil, opcode, len(payload)), payload...))
}
