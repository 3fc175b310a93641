package main

// Reload on SIGHUP, drain on SIGTERM and the health check, against a live
// server.

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// rtmpPublishLoop publishes name with the test client and sends a small
// keyframe every 40 ms until the test ends or stop is called.
func rtmpPublishLoop(t *testing.T, addr, name string) (stop func()) {
	t.Helper()
	code, _, c := rtmpTryPublish(t, addr, name)
	if code != "NetStream.Publish.Start" {
		t.Fatalf("publish %s: %s", name, code)
	}
	c.send(csidVideo, msgVideo, mediaStreamID, 0, testVideoHeader)
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		for ts := uint32(0); ; ts += 40 {
			select {
			case <-done:
				return
			case <-time.After(40 * time.Millisecond):
			}
			if _, err := c.nc.Write(appendChunks(nil, csidVideo, msgVideo, mediaStreamID, ts, testVideo(true, 200), c.chunkSize)); err != nil {
				return
			}
		}
	}()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			close(done)
			<-finished
			c.nc.Close()
		}
	}
	t.Cleanup(stop)
	return stop
}

// flvViewer plays url over HTTP-FLV and counts the bytes it gets.
type flvViewer struct {
	status int
	bytes  atomic.Int64
	ended  chan struct{}
}

func startFLVViewer(t *testing.T, url string) *flvViewer {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	v := &flvViewer{status: resp.StatusCode, ended: make(chan struct{})}
	go func() {
		defer close(v.ended)
		defer resp.Body.Close()
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			v.bytes.Add(int64(n))
			if err != nil {
				return
			}
		}
	}()
	return v
}

// TestReloadOnSIGHUP: a SIGHUP with a new secret in the config file
// refuses the old signs and admits the new ones while a viewer admitted
// with an old sign keeps watching; a config that does not parse keeps the
// running one; a change that needs a restart is logged as such.
func TestReloadOnSIGHUP(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config.json")
	writeConfig := func(s string) {
		if err := os.WriteFile(file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeConfig(`{"auth": {"publish": true, "play": true, "secret": "OLD"}}`)
	args := []string{"-config", file, "-rtmp", "127.0.0.1:0", "-http", "127.0.0.1:0"}
	cfg, err := parseFlags(args, nil, io.Discard, func(string, ...any) {})
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	srv, err := listen(&cfg, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	hup := make(chan os.Signal, 1)
	srv.args, srv.hup = args, hup
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	rtmpAddr, base := srv.rtmpLn.Addr().String(), "http://"+srv.httpLn.Addr().String()
	exp := time.Now().Add(time.Hour).Unix()
	key := streamKey{"live", "cam"}
	signWith := func(secret string) string { return sign(key, exp, secret) }
	playStatus := func(secret string) int {
		resp, _, _ := httpGetFLVFor(base+"/live/cam.flv?"+signWith(secret), 200*time.Millisecond)
		if resp == nil {
			return 0
		}
		return resp.StatusCode
	}
	sighup := func(wantLog string) {
		t.Helper()
		n := strings.Count(logs.String(), wantLog)
		hup <- syscall.SIGHUP
		waitFor(t, "the log to say "+wantLog, func() bool { return strings.Count(logs.String(), wantLog) > n })
	}

	rtmpPublishLoop(t, rtmpAddr, "cam?"+signWith("OLD"))
	viewer := startFLVViewer(t, base+"/live/cam.flv?"+signWith("OLD"))
	if viewer.status != 200 {
		t.Fatalf("viewer with the old sign before the reload: %d", viewer.status)
	}

	writeConfig(`{"auth": {"publish": true, "play": true, "secret": "NEW"}}`)
	sighup("reloaded")
	if got := playStatus("OLD"); got != 403 {
		t.Errorf("play with the old sign after the reload: %d; want 403", got)
	}
	if got := playStatus("NEW"); got != 200 {
		t.Errorf("play with the new sign after the reload: %d; want 200", got)
	}
	before := viewer.bytes.Load()
	waitFor(t, "the viewer admitted before the reload to get more media", func() bool { return viewer.bytes.Load() > before+1000 })

	writeConfig(`{"auth": {"publish": true, "play": true, "secret": "BROKEN",`)
	sighup("reload refused")
	if got := playStatus("NEW"); got != 200 {
		t.Errorf("play with the running sign after a refused reload: %d; want 200", got)
	}
	if got := playStatus("BROKEN"); got != 403 {
		t.Errorf("play with the broken file's sign: %d; want 403", got)
	}

	writeConfig(`{"auth": {"publish": true, "play": true, "secret": "NEW"}, "http": {"allow_origin": "https://x.example"}}`)
	sighup("take a restart")
	if !strings.Contains(logs.String(), "AllowOrigin") {
		t.Errorf("the restart warning does not name AllowOrigin")
	}
	select {
	case <-viewer.ended:
		t.Errorf("the viewer's stream ended during the reloads")
	default:
	}
}

// TestDrain: at shutdown with -drain, health answers 503, new players and
// connections are refused, and the server waits for its clients: here a
// viewer whose stream ends when its publisher leaves. Without clients
// left it shuts down at once; past -drain it closes the rest.
func TestDrain(t *testing.T) {
	ts := startServer(t, func(c *config) { c.Drain = time.Minute })
	base := "http://" + ts.httpAddr
	health := func() int {
		resp, err := http.Get(base + "/api/health")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if got := health(); got != 200 {
		t.Fatalf("health while serving: %d; want 200", got)
	}
	stopPub := rtmpPublishLoop(t, ts.rtmpAddr, "cam")
	viewer := startFLVViewer(t, base+"/live/cam.flv")
	waitFor(t, "the viewer to get media", func() bool { return viewer.bytes.Load() > 1000 })

	stopped := make(chan error, 1)
	go func() { stopped <- ts.stop() }()
	waitFor(t, "health to answer 503", func() bool { return health() == 503 })
	if resp, _, _ := httpGetFLVFor(base+"/live/cam.flv", 200*time.Millisecond); resp == nil || resp.StatusCode != 503 {
		t.Errorf("a new player while draining: %v; want 503", resp)
	}
	if nc, err := net.DialTimeout("tcp", ts.rtmpAddr, time.Second); err == nil {
		nc.Close()
		t.Errorf("a new RTMP connection while draining was accepted")
	}
	before := viewer.bytes.Load()
	waitFor(t, "the viewer to keep getting media while draining", func() bool { return viewer.bytes.Load() > before+1000 })
	select {
	case err := <-stopped:
		t.Fatalf("shut down with a viewer still watching: %v", err)
	default:
	}
	stopPub() // the stream ends, and with it the viewer's response
	<-viewer.ended
	if err := <-stopped; err != nil {
		t.Fatalf("serve: %v", err)
	}
	logs := ts.logs.String()
	d, e, s := strings.Index(logs, `msg="draining`), strings.Index(logs, `msg="drained`), strings.Index(logs, `msg="shutting down"`)
	if d < 0 || e < d || s < e {
		t.Errorf("want draining, drained, shutting down in that order; log:\n%s", logs)
	}
}

// TestDrainTimeLimit: a client that stays is closed once -drain passes.
func TestDrainTimeLimit(t *testing.T) {
	ts := startServer(t, func(c *config) { c.Drain = 500 * time.Millisecond })
	viewer := startFLVViewer(t, "http://"+ts.httpAddr+"/live/nobody.flv") // waits for a publisher
	waitFor(t, "the viewer to be counted", func() bool { return ts.hub.counters.active[protoHTTP].Load() == 1 })
	if err := ts.stop(); err != nil {
		t.Fatal(err)
	}
	<-viewer.ended
	if logs := ts.logs.String(); !strings.Contains(logs, "drain time passed") {
		t.Errorf("no log line about the drain time passing:\n%s", logs)
	}
}

// TestHealthNeedsNoCredentials: load balancers do not log in.
func TestHealthNeedsNoCredentials(t *testing.T) {
	h := newTestHandler(t, func(c *config) { c.APIUser, c.APIPass, c.API = "admin", "pw", false })
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/api/health", nil))
	if w.Code != 200 || !strings.Contains(w.Body.String(), `"ok"`) {
		t.Errorf("GET /api/health = %d %q; want 200 ok, with -api off and credentials set", w.Code, w.Body.String())
	}
}
