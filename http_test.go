package main

// Play path parsing, the HTTP routes, and WS control frames against a live
// server. (WebSocket framing itself: websocket_test.go.)

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestParsePlayPath(t *testing.T) {
	long := strings.Repeat("a", 128)
	for _, tc := range []struct {
		app, file string
		key       streamKey
		status    int
	}{
		{"live", "x.flv", streamKey{"live", "x"}, 0},
		{"live", "Stream_01-b.flv", streamKey{"live", "Stream_01-b"}, 0},
		{"a-b_C", "9.flv", streamKey{"a-b_C", "9"}, 0},
		{long, long + ".flv", streamKey{long, long}, 0},
		{"live", "x", streamKey{}, http.StatusNotFound},
		{"live", "x.mp4", streamKey{}, http.StatusNotFound},
		{"live", "x.FLV", streamKey{}, http.StatusNotFound},
		{"live", "x.flv.bak", streamKey{}, http.StatusNotFound},
		{"live", "", streamKey{}, http.StatusNotFound},
		{"live", ".flv", streamKey{}, http.StatusBadRequest},
		{"live", "a.b.flv", streamKey{}, http.StatusBadRequest},
		{"live", "x.flv.flv", streamKey{}, http.StatusBadRequest},
		{"live", "..flv", streamKey{}, http.StatusBadRequest},
		{"live", "../x.flv", streamKey{}, http.StatusBadRequest},
		{"live", "a b.flv", streamKey{}, http.StatusBadRequest},
		{"live", "a%20b.flv", streamKey{}, http.StatusBadRequest},
		{"live", "a\x00.flv", streamKey{}, http.StatusBadRequest},
		{"live", "é.flv", streamKey{}, http.StatusBadRequest},
		{"live", "流.flv", streamKey{}, http.StatusBadRequest},
		{"live", long + "a.flv", streamKey{}, http.StatusBadRequest},
		{"", "x.flv", streamKey{}, http.StatusBadRequest},
		{"li.ve", "x.flv", streamKey{}, http.StatusBadRequest},
		{"li/ve", "x.flv", streamKey{}, http.StatusBadRequest},
		{long + "a", "x.flv", streamKey{}, http.StatusBadRequest},
	} {
		key, status := parsePlayPath(tc.app, tc.file)
		if key != tc.key || status != tc.status {
			t.Errorf("parsePlayPath(%q, %q) = %v, %d; want %v, %d", trimName(tc.app), trimName(tc.file), key, status, tc.key, tc.status)
		}
	}
}

func trimName(s string) string {
	if len(s) > 20 {
		return s[:20] + "..."
	}
	return s
}

// newTestHandler returns the HTTP routes on a running hub.
func newTestHandler(t *testing.T, edit func(*config)) http.Handler {
	t.Helper()
	cfg := defaultConfig()
	if edit != nil {
		edit(&cfg)
	}
	log := slog.New(slog.DiscardHandler)
	h := newHub(&cfg, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		h.run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return newHTTPServer(&cfg, h, newAdmission(&cfg, nil, &h.counters), log).handler()
}

func TestHTTPRoutes(t *testing.T) {
	h := newTestHandler(t, nil)
	wsHeaders := func(version, key string) http.Header {
		return http.Header{"Connection": {"keep-alive, Upgrade"}, "Upgrade": {"websocket"},
			"Sec-Websocket-Version": {version}, "Sec-Websocket-Key": {key}}
	}
	for _, tc := range []struct {
		name, method, path string
		header             http.Header
		status             int
		wantHeader         map[string]string
		body               string // a substring of the body
	}{
		{
			name: "CORS preflight", method: "OPTIONS", path: "/live/x.flv",
			header: http.Header{"Origin": {"https://example.com"}, "Access-Control-Request-Method": {"GET"},
				"Access-Control-Request-Headers": {"range"}},
			status: http.StatusNoContent,
			wantHeader: map[string]string{"Access-Control-Allow-Origin": "*",
				"Access-Control-Allow-Methods": "GET, HEAD, OPTIONS", "Access-Control-Allow-Headers": "range",
				"Access-Control-Max-Age": "86400"},
		},
		{
			name: "another origin's preflight for a kick", method: "OPTIONS", path: "/api/streams/live/x",
			header: http.Header{"Origin": {"https://evil.example"}, "Access-Control-Request-Method": {"DELETE"}},
			status: http.StatusNoContent,
			wantHeader: map[string]string{"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": "",
				"Access-Control-Allow-Headers": ""},
		},
		{
			name: "another origin reads the API", method: "GET", path: "/api/streams",
			header: http.Header{"Origin": {"https://evil.example"}}, status: http.StatusOK,
			wantHeader: map[string]string{"Access-Control-Allow-Origin": ""},
		},
		{
			name: "admin page", method: "GET", path: "/admin/", status: http.StatusOK,
			header: http.Header{"Origin": {"https://evil.example"}},
			wantHeader: map[string]string{"Content-Type": "text/html; charset=utf-8", "Access-Control-Allow-Origin": "",
				"X-Frame-Options": "DENY"},
			body: "<",
		},
		{
			name: "root redirects to the admin page", method: "GET", path: "/", status: http.StatusFound,
			wantHeader: map[string]string{"Location": "/admin/"},
		},
		{
			name: "stream list", method: "GET", path: "/api/streams", status: http.StatusOK,
			wantHeader: map[string]string{"Content-Type": "application/json"}, body: "{",
		},
		{
			// RFC 6455 §4.2.2: the versions the server understands.
			name: "WS upgrade, version 12", method: "GET", path: "/live/x.flv",
			header: wsHeaders("12", "dGhlIHNhbXBsZSBub25jZQ=="), status: http.StatusUpgradeRequired,
			wantHeader: map[string]string{"Sec-WebSocket-Version": "13"},
		},
		{
			name: "WS upgrade, bad key", method: "GET", path: "/live/x.flv",
			header: wsHeaders("13", "short"), status: http.StatusBadRequest,
		},
		{
			name: "WS upgrade, no key", method: "GET", path: "/live/x.flv",
			header: wsHeaders("13", ""), status: http.StatusBadRequest,
		},
		{name: "bad name, WS upgrade", method: "GET", path: "/live/a.b.flv", header: wsHeaders("13", "dGhlIHNhbXBsZSBub25jZQ=="), status: http.StatusBadRequest},
		{name: "not .flv", method: "GET", path: "/live/x.mp4", status: http.StatusNotFound},
		{name: "too deep", method: "GET", path: "/a/b/c.flv", status: http.StatusNotFound},
		{name: "POST a stream", method: "POST", path: "/live/x.flv", status: http.StatusMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, tc.path, nil)
			for k, vs := range tc.header {
				for _, v := range vs {
					if v != "" {
						r.Header.Add(k, v)
					}
				}
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.status {
				t.Errorf("%s %s = %d; want %d", tc.method, tc.path, w.Code, tc.status)
			}
			for k, v := range tc.wantHeader {
				if got := w.Header().Get(k); got != v {
					t.Errorf("%s %s: %s = %q; want %q", tc.method, tc.path, k, got, v)
				}
			}
			if !strings.Contains(w.Body.String(), tc.body) {
				t.Errorf("%s %s: body %q; want it to contain %q", tc.method, tc.path, trimName(w.Body.String()), tc.body)
			}
		})
	}

	t.Run("no CORS when allow-origin is empty", func(t *testing.T) {
		h := newTestHandler(t, func(c *config) { c.AllowOrigin = "" })
		for _, method := range []string{"OPTIONS", "GET"} {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(method, "/live/x.flv", nil))
			if got := w.Header().Get("Access-Control-Allow-Origin"); got != "" {
				t.Errorf("%s: Access-Control-Allow-Origin = %q; want none", method, got)
			}
			if got := w.Header().Get("Access-Control-Allow-Methods"); got != "" {
				t.Errorf("%s: Access-Control-Allow-Methods = %q; want none", method, got)
			}
		}
	})
}

// readUntilOpcode reads server frames, skipping media, until one with op.
func readUntilOpcode(t *testing.T, c *wsClient, op byte) []byte {
	t.Helper()
	for {
		got, p, err := c.readFrame()
		if err != nil {
			t.Fatalf("waiting for opcode %#x: %v", op, err)
		}
		if got == op {
			return p
		}
		if got != wsOpBinary {
			t.Fatalf("got opcode %#x (% x) waiting for %#x", got, p, op)
		}
	}
}

// TestWSControlFrames plays a stream nobody publishes over WS-FLV and
// drives the control frames of RFC 6455 §5.5 against a live server.
func TestWSControlFrames(t *testing.T) {
	ts := startServer(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	key := streamKey{"live", "wsctl"}
	dial := func(t *testing.T) *wsClient {
		c, err := dialWS(ctx, ts.httpAddr, "/live/wsctl.flv")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.nc.Close() })
		c.nc.SetDeadline(time.Now().Add(10 * time.Second))
		waitFor(t, "the WS player", func() bool { return ts.viewers(key) == 1 })
		return c
	}

	t.Run("ping gets a pong with the same payload, close ends the stream", func(t *testing.T) {
		c := dial(t)
		for _, payload := range [][]byte{[]byte("are you there?"), {}, seqBytes(125, 0)} {
			if err := c.writeFrame(wsOpPing, payload); err != nil {
				t.Fatal(err)
			}
			// §5.5.3: the Pong carries the Ping's application data.
			if got := readUntilOpcode(t, c, wsOpPong); !bytes.Equal(got, payload) {
				t.Errorf("pong payload %q; want %q", got, payload)
			}
		}
		// §5.5.1: a client Close gets a Close back, then the server closes.
		if err := c.writeFrame(wsOpClose, joinBytes(bs(0x03, 0xE8), []byte("bye"))); err != nil {
			t.Fatal(err)
		}
		if p := readUntilOpcode(t, c, wsOpClose); len(p) < 2 {
			t.Errorf("server Close payload % x; want a status code", p)
		}
		if op, p, err := c.readFrame(); err == nil {
			t.Errorf("after the Close, a frame op %#x % x; want the connection closed", op, p)
		}
		waitFor(t, "the player to leave", func() bool { return ts.viewers(key) == 0 })
	})

	t.Run("an unmasked frame gets Close 1002 and the connection ends", func(t *testing.T) {
		c := dial(t)
		if _, err := c.nc.Write(bs(0x89, 0x02, 'h', 'i')); err != nil { // unmasked ping
			t.Fatal(err)
		}
		p := readUntilOpcode(t, c, wsOpClose)
		if len(p) < 2 || binary.BigEndian.Uint16(p) != 1002 {
			t.Errorf("server Close payload % x; want status 1002, protocol error (§7.4.1)", p)
		}
		// §1.4, §5.5.1: after its Close the server sends nothing more.
		if op, p, err := c.readFrame(); err == nil {
			t.Errorf("after its Close 1002 the server sent another frame, op %#x % x; want nothing more (§1.4, §5.5.1)", op, p)
		}
		waitFor(t, "the player to leave", func() bool { return ts.viewers(key) == 0 })
	})

	t.Run("a frame over the limit gets Close 1002", func(t *testing.T) {
		c := dial(t)
		hdr := binary.BigEndian.AppendUint64(bs(0x82, 0xFF), 1<<40) // binary, MASK, 1 TiB
		if _, err := c.nc.Write(append(hdr, wsKey[:]...)); err != nil {
			t.Fatal(err)
		}
		if p := readUntilOpcode(t, c, wsOpClose); len(p) < 2 || binary.BigEndian.Uint16(p) != 1002 {
			t.Errorf("server Close payload % x; want status 1002", p)
		}
		waitFor(t, "the player to leave", func() bool { return ts.viewers(key) == 0 })
	})
}

// TestBadPlayPaths: malformed names answer 400 or 404 at once, and the
// server goes on serving.
func TestBadPlayPaths(t *testing.T) {
	ts := startServer(t, nil)
	for _, tc := range []struct {
		path string
		want int
	}{
		{"/live/te.st.flv", 400},
		{"/live/a%20b.flv", 400},
		{"/live/.flv", 400},
		{"/live/x.mp4", 404},
		{"/live/x", 404},
		{"/a/b/c.flv", 404},
		{"/live/" + strings.Repeat("a", 200) + ".flv", 400},
		{"/l%2Fve/x.flv", 400},
		{"/live/%00.flv", 400},
	} {
		resp, err := http.Get("http://" + ts.httpAddr + tc.path)
		if err != nil {
			t.Fatalf("GET %s: %v", tc.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET %s = %d; want %d", tc.path, resp.StatusCode, tc.want)
		}
	}
	resp, err := http.Get("http://" + ts.httpAddr + "/api/streams")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("server not serving after bad paths: %v", err)
	}
	resp.Body.Close()
}

// ---- Fuzz targets ----

// FuzzParsePlayPath: only names in the safe set are accepted, and they
// are the path's own.
func FuzzParsePlayPath(f *testing.F) {
	for _, s := range [][2]string{{"live", "x.flv"}, {"live", "a.b.flv"}, {"", ".flv"}, {"live", "x.mp4"}, {"é", "流.flv"}} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, app, file string) {
		key, status := parsePlayPath(app, file)
		switch status {
		case 0:
			if key.App != app || key.Name+".flv" != file || !validName(key.App) || !validName(key.Name) {
				t.Fatalf("parsePlayPath(%q, %q) = %v", app, file, key)
			}
			for _, s := range []string{key.App, key.Name} {
				if len(s) == 0 || len(s) > 128 || strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") != "" {
					t.Fatalf("parsePlayPath(%q, %q) accepted %q", app, file, s)
				}
			}
		case http.StatusNotFound:
			if strings.HasSuffix(file, ".flv") {
				t.Fatalf("parsePlayPath(%q, %q) = 404 for a .flv path", app, file)
			}
		case http.StatusBadRequest:
			if !strings.HasSuffix(file, ".flv") {
				t.Fatalf("parsePlayPath(%q, %q) = 400 for a path that is not .flv", app, file)
			}
		default:
			t.Fatalf("parsePlayPath(%q, %q) = status %d", app, file, status)
		}
		if status != 0 && key != (streamKey{}) {
			t.Fatalf("parsePlayPath(%q, %q) = %v with status %d", app, file, key, status)
		}
	})
}

// TestWSFrameDeadline is the attack of a WS-FLV client that sends the
// header of a 60000-byte frame and then nothing: the connection had no
// read deadline, so the header held its goroutine and buffer for good.
// Once a frame has begun it must end within the ping timeout, or the
// client gets Close 1008 and is dropped. A client silent between frames,
// for several timeouts, stays and keeps getting media.
func TestWSFrameDeadline(t *testing.T) {
	// Short, but over a second: the players' write deadline moves at most
	// once a second (egress.go writeDeadline), so a shorter ping timeout
	// would drop readers that take everything.
	const timeout = 1200 * time.Millisecond
	ts := startServer(t, func(c *config) { c.PingTimeout = timeout })
	key := streamKey{"live", "wsdeadline"}

	// A publisher sends a small frame every 40 ms until the test ends.
	pub := dialRTMP(t, ts.rtmpAddr, false)
	pub.connect("live")
	sid := pub.createStream()
	pub.command(sid, "publish", nil, key.Name, "live")
	if code := pub.expectStatus(); code != "NetStream.Publish.Start" {
		t.Fatalf("publish: %s", code)
	}
	pub.send(csidVideo, msgVideo, sid, 0, testVideoHeader)
	pub.send(csidVideo, msgVideo, sid, 0, testVideo(true, 100))
	done := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(done)
	wg.Go(func() {
		for i := 1; ; i++ {
			select {
			case <-done:
				return
			case <-time.After(40 * time.Millisecond):
			}
			msg := appendChunks(nil, csidVideo, msgVideo, sid, uint32(40*i), testVideo(i%25 == 0, 100), pub.chunkSize)
			if _, err := pub.nc.Write(msg); err != nil {
				return
			}
		}
	})

	// play connects a WS-FLV player that reads everything the server
	// sends (so that only its own silence can get it dropped).
	type player struct {
		c         *wsClient
		media     atomic.Int64 // binary payload bytes
		closeCode atomic.Int32 // status of the server's Close, if any
		gone      chan error
	}
	play := func() *player {
		c, err := dialWS(context.Background(), ts.httpAddr, "/live/"+key.Name+".flv")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.nc.Close() })
		c.nc.SetDeadline(time.Now().Add(30 * time.Second)) // a generous wait, not a limit under test
		p := &player{c: c, gone: make(chan error, 1)}
		go func() {
			for {
				op, payload, err := c.readFrame()
				if err != nil {
					p.gone <- err
					return
				}
				switch {
				case op == wsOpBinary:
					p.media.Add(int64(len(payload)))
				case op == wsOpClose && len(payload) >= 2:
					p.closeCode.Store(int32(binary.BigEndian.Uint16(payload)))
				}
			}
		}()
		return p
	}
	idle, stalled := play(), play()
	waitFor(t, "both players", func() bool { return ts.viewers(key) == 2 })
	idleSince := time.Now()
	// The idle player sends one whole frame, a ping, then nothing at all:
	// the deadline of a finished frame must not linger.
	if err := idle.c.writeFrame(wsOpPing, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	// The stalled player: the header of a masked 60000-byte binary frame
	// (§5.2: FIN+binary, MASK+126, 16-bit length, masking key), no payload.
	header := binary.BigEndian.AppendUint16(bs(0x82, 0x80|126), 60000)
	if _, err := stalled.c.nc.Write(append(header, wsKey[:]...)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-stalled.gone:
		if code := stalled.closeCode.Load(); code != 1008 {
			t.Errorf("stalled player: server Close status %d; want 1008, policy violation (§7.4.1)", code)
		}
		t.Logf("stalled player dropped: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatalf("a player stalled in a frame header is still connected after 20 s (ping timeout %v)", timeout)
	}

	// The idle player has been silent for two timeouts and more, and is
	// still served.
	time.Sleep(time.Until(idleSince.Add(2*timeout + timeout/2)))
	stillThere := func() {
		t.Helper()
		select {
		case err := <-idle.gone:
			t.Fatalf("idle player dropped (server Close status %d): %v", idle.closeCode.Load(), err)
		default:
		}
	}
	stillThere()
	before := idle.media.Load()
	waitFor(t, "more media for the idle player", func() bool { return idle.media.Load() > before })
	stillThere()
	if n := ts.viewers(key); n != 1 {
		t.Errorf("viewers = %d; want 1, the idle player", n)
	}
}

// TestPlayWaitEndsHTTPPlayers: with -play-wait, an HTTP-FLV player of a
// name nobody publishes gets its response ended (empty: it never got a
// byte of FLV) and a WS-FLV player a Close frame, with a log line saying
// why, instead of holding their connections forever.
func TestPlayWaitEndsHTTPPlayers(t *testing.T) {
	ts := startServer(t, func(c *config) { c.PlayWait = 500 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	wsDone := make(chan error, 1)
	go func() {
		ws, err := dialWS(ctx, ts.httpAddr, "/live/nobody.flv")
		if err != nil {
			wsDone <- err
			return
		}
		defer ws.nc.Close()
		ws.nc.SetDeadline(time.Now().Add(20 * time.Second))
		data, err := ws.readFLV() // nil error: it ended with a Close frame
		if err == nil && len(data) > 0 {
			err = fmt.Errorf("got %d bytes of FLV from a stream nobody publishes", len(data))
		}
		wsDone <- err
	}()
	resp, data, err := httpGetFLV(ctx, ts.httpURL("nobody"))
	if err != nil {
		t.Fatalf("HTTP-FLV player still waiting: %v; want its response ended", err)
	}
	if resp.StatusCode != http.StatusOK || len(data) != 0 {
		t.Errorf("HTTP-FLV player got %s and %d bytes; want 200 and an empty body", resp.Status, len(data))
	}
	if err := <-wsDone; err != nil {
		t.Errorf("WS-FLV player: %v; want a Close frame", err)
	}
	waitFor(t, "the players to leave", func() bool { return ts.viewers(streamKey{"live", "nobody"}) == 0 })
	// A player's close line comes after its connection has closed.
	waitFor(t, "a log line per player naming "+string(reasonNoPublisher), func() bool {
		return strings.Count(ts.logs.String(), string(reasonNoPublisher)) >= 2
	})
}

// TestAccessLog: at debug level every HTTP request gets one access line
// with its path but not its query, which can carry a signature; the play
// requests, which take over their connection, say so with the status of
// their head. At info level there are none.
func TestAccessLog(t *testing.T) {
	ts := startServer(t, func(c *config) { c.LogFormat = "json" })
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	base := "http://" + ts.httpAddr
	resp, err := client.Get(base + "/api/streams?sign=SECRET")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/streams: %s", resp.Status)
	}
	// An HTTP-FLV player waiting for a publisher: head sent, then nothing.
	resp, err = client.Get(base + "/live/s1.flv?sign=SECRET")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ws, err := dialWS(ctx, ts.httpAddr, "/live/s2.flv?sign=SECRET")
	if err != nil {
		t.Fatal(err)
	}
	ws.nc.Close()
	resp, err = client.Get(base + "/nope/x.mp4")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := ts.stop(); err != nil { // every handler has returned: every line is written
		t.Fatal(err)
	}

	type access struct {
		status   int
		bytes    int
		hijacked bool
	}
	want := map[string]access{
		"/api/streams": {200, len(body), false},
		"/live/s1.flv": {200, 0, true},
		"/live/s2.flv": {101, 0, true},
		"/nope/x.mp4":  {404, len("Not Found\n"), false},
	}
	seen := map[string]int{}
	for _, m := range jsonLogLines(t, ts.logs.String()) {
		if m["msg"] != "http request" {
			continue
		}
		path, _ := m["path"].(string)
		seen[path]++
		w, ok := want[path]
		if !ok {
			t.Errorf("access line for a path never requested: %v", m)
			continue
		}
		got := access{status: int(m["status"].(float64)), bytes: int(m["bytes"].(float64)), hijacked: m["hijacked"] == true}
		if got != w {
			t.Errorf("access line %v: got %+v; want %+v", m, got, w)
		}
		if m["level"] != "DEBUG" || m["method"] != "GET" || m["remote"] == "" || m["duration"] == nil {
			t.Errorf("access line %v: want level DEBUG, method GET, remote and duration", m)
		}
	}
	for path := range want {
		if seen[path] != 1 {
			t.Errorf("%d access lines for %s; want 1", seen[path], path)
		}
	}
	if strings.Contains(ts.logs.String(), "SECRET") {
		t.Errorf("the log shows a signature:\n%s", ts.logs.String())
	}

	quiet := startServer(t, func(c *config) { c.LogLevel = slog.LevelInfo })
	resp, err = client.Get("http://" + quiet.httpAddr + "/api/streams")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	quiet.stop()
	if strings.Contains(quiet.logs.String(), "http request") {
		t.Errorf("access line at info level:\n%s", quiet.logs.String())
	}
}

// TestRequestBodyDeadline: a request body, like the head before it, must
// arrive within a bound (README, Hostile input), whichever route it goes
// to. net/http reads a body the handler left, so that it can keep the
// connection, with no deadline of its own: a client announcing a body and
// sending it slowly, or never, held its connection and goroutine for good.
func TestRequestBodyDeadline(t *testing.T) {
	ts := startServer(t, nil)
	ts.web.bodyTimeout = 300 * time.Millisecond
	// send writes a request and reads the answer until the server closes
	// the connection (or the generous client deadline says it never did).
	send := func(req string) string {
		t.Helper()
		c, err := net.Dial("tcp", ts.httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(30 * time.Second))
		io.WriteString(c, req)
		b, err := io.ReadAll(c)
		if err != nil {
			t.Errorf("%.40q: %v after %q", req, err, b)
		}
		return string(b)
	}
	for _, tc := range []struct{ name, req, want string }{
		{"GET, body never sent", "GET /api/health HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{", "HTTP/1.1 408"},
		{"GET, chunked body never ended", "GET /api/health HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123", "HTTP/1.1 408"},
		{"playlist, body never sent", "GET /live/none/index.m3u8 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", "HTTP/1.1 408"},
		{"HTTP-FLV, body never sent", "GET /live/none.flv HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", "HTTP/1.1 408"},
		{"DELETE, body never sent", "DELETE /api/clients/X HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", "HTTP/1.1 408"},
		{"POST, body never sent", "POST /api/relay/pull HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{", "HTTP/1.1 400"},
		{"POST to a route without POST", "POST /live/none/index.m3u8 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", "HTTP/1.1 405"},
		{"OPTIONS, body never sent", "OPTIONS /live/none/index.m3u8 HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", "HTTP/1.1 408"},
		{"GET, body too long", "GET /api/health HTTP/1.1\r\nHost: x\r\nContent-Length: 20000\r\n\r\n" + strings.Repeat("a", 20000), "HTTP/1.1 413"},
		{"GET, small body sent whole", "GET /api/health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello", "HTTP/1.1 200"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := send(tc.req); !strings.HasPrefix(got, tc.want) {
				t.Errorf("got %.60q; want %s", got, tc.want)
			}
		})
	}
}
