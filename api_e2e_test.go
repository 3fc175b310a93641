package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/md5"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// getJSON fetches url into v and returns the status.
func getJSON(t *testing.T, method, url string, v any) int {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
	}
	return resp.StatusCode
}

// longPublish publishes the clip in a loop until the returned cmd is
// killed or the server drops it.
func longPublish(t *testing.T, url string) *exec.Cmd {
	t.Helper()
	clip := testClip(t)
	cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", clip,
		"-c", "copy", "-f", "flv", url)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

type apiStreamsReply map[string]map[string]struct {
	Publisher *struct {
		App, Stream, ClientID, IP, Protocol, Query string
		Bytes                                      uint64
		BitrateIn, BitrateIn30                     float64
		Video                                      *videoParams
		Audio                                      *audioParams
	}
	Subscribers []struct{ ClientID, Protocol string }
	Viewers     map[string]int
}

// TestAPIStreams checks /api/streams and /api/streams/APP/NAME against a
// live publish: codecs, size, frame rate and bitrate match what was pushed,
// viewers are counted per protocol.
func TestAPIStreams(t *testing.T) {
	clip := testClip(t)
	ts := startServer(t, nil)
	base := "http://" + ts.httpAddr
	var empty map[string]any
	if getJSON(t, "GET", base+"/api/streams", &empty); len(empty) != 0 {
		t.Errorf("/api/streams with nothing live = %v; want {}", empty)
	}
	longPublish(t, ts.rtmpURL("api?sign=x&k=v"))
	key := streamKey{"live", "api"}
	waitFor(t, "the publisher", func() bool { return ts.live(key) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go httpGetFLV(ctx, ts.httpURL("api"))
	ws, err := dialWS(ctx, ts.httpAddr, "/live/api.flv")
	if err != nil {
		t.Fatal(err)
	}
	go ws.readFLV()
	defer ws.nc.Close()
	play := dialRTMP(t, ts.rtmpAddr, false)
	play.connect("live")
	play.command(play.createStream(), "play", nil, "api")
	go func() {
		for {
			if _, err := play.read(); err != nil {
				return
			}
		}
	}()

	// The clip's real bitrate: its bytes over its duration.
	fi, _ := os.Stat(clip)
	clipKbps := float64(fi.Size()) * 8 / 4 / 1000
	var got apiStreamsReply
	waitFor(t, "3 s of stats", func() bool {
		getJSON(t, "GET", base+"/api/streams", &got)
		p := got["live"]["api"].Publisher
		return p != nil && p.Video != nil && p.Video.FPS > 0 && p.BitrateIn30 > 0 &&
			len(got["live"]["api"].Subscribers) == 3 && hasUptime(t, base, 3)
	})
	s := got["live"]["api"]
	p := s.Publisher
	if p.App != "live" || p.Stream != "api" || len(p.ClientID) != 8 || p.IP != "127.0.0.1" || p.Protocol != "rtmp" || p.Query != "sign=x&k=v" {
		t.Errorf("publisher = %+v", p)
	}
	if v := *p.Video; v.Codec != "H264" || v.Width != 320 || v.Height != 240 || math.Abs(v.FPS-25) > 1 || v.GOPFrames != 25 {
		t.Errorf("video = %+v; want H264 320x240 25 fps, GOP 25", v)
	}
	if a := *p.Audio; a.Codec != "AAC" || a.SampleRate != 44100 || a.Channels != 1 || a.Profile != "LC" {
		t.Errorf("audio = %+v; want AAC LC 44100 mono", a)
	}
	if math.Abs(p.BitrateIn30-clipKbps)/clipKbps > 0.2 {
		t.Errorf("bitrateIn30 = %v kbit/s; the clip is %v kbit/s", p.BitrateIn30, clipKbps)
	}
	if want := map[string]int{"rtmp": 1, "http": 1, "ws": 1}; fmt.Sprint(s.Viewers) != fmt.Sprint(want) {
		t.Errorf("viewers = %v; want %v", s.Viewers, want)
	}
	var one map[string]any
	getJSON(t, "GET", base+"/api/streams/live/api", &one)
	if one["isLive"] != true || one["viewers"] != 3.0 || one["duration"].(float64) < 3 {
		t.Errorf("/api/streams/live/api = %v", one)
	}
	if args, _ := one["arguments"].(map[string]any); args["k"] != "v" || args["sign"] != "x" {
		t.Errorf("arguments = %v; want the publish query", one["arguments"])
	}
	var srv map[string]any
	getJSON(t, "GET", base+"/api/server", &srv)
	for _, k := range []string{"os", "cpu", "mem", "net", "nodejs", "clients", "version", "go", "process"} {
		if _, ok := srv[k]; !ok {
			t.Errorf("/api/server has no %q", k)
		}
	}
	if mem, _ := srv["mem"].(map[string]any); mem["totle"] == nil {
		t.Errorf("/api/server mem has no totle (NMS's key): %v", srv["mem"])
	}
	if clients, _ := srv["clients"].(map[string]any); clients["rtmp"] != 2.0 || clients["http"] != 1.0 || clients["ws"] != 1.0 {
		t.Errorf("clients = %v; want rtmp 2, http 1, ws 1", srv["clients"])
	}
}

// hasUptime reports whether the stream has been live for secs seconds.
func hasUptime(t *testing.T, base string, secs float64) bool {
	var one map[string]any
	getJSON(t, "GET", base+"/api/streams/live/api", &one)
	d, _ := one["duration"].(float64)
	return d >= secs
}

// TestAPIKick: DELETE on a stream disconnects its publisher (ffmpeg exits);
// DELETE on a client id disconnects that viewer; unknown ones are 404.
func TestAPIKick(t *testing.T) {
	ts := startServer(t, nil)
	base := "http://" + ts.httpAddr
	pub := longPublish(t, ts.rtmpURL("kick"))
	key := streamKey{"live", "kick"}
	waitFor(t, "the publisher", func() bool { return ts.live(key) })

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	viewerDone := make(chan error, 1)
	go func() {
		_, _, err := httpGetFLV(ctx, ts.httpURL("kick"))
		viewerDone <- err
	}()
	waitFor(t, "the viewer", func() bool { return ts.viewers(key) == 1 })
	var id string
	for _, s := range ts.hub.snapshot() {
		if s.Key == key {
			id = s.Subscribers[0].ID
		}
	}
	var reply any
	if st := getJSON(t, "DELETE", base+"/api/clients/"+id, &reply); st != 200 || reply != "ok" {
		t.Errorf("DELETE client = %d %v", st, reply)
	}
	<-viewerDone // its response ended
	if st := getJSON(t, "DELETE", base+"/api/clients/NOSUCHID", &reply); st != 404 {
		t.Errorf("DELETE unknown client = %d", st)
	}

	if st := getJSON(t, "DELETE", base+"/api/streams/live/kick", &reply); st != 200 || reply != "ok" {
		t.Errorf("DELETE stream = %d %v", st, reply)
	}
	exited := make(chan error, 1)
	go func() { exited <- pub.Wait() }()
	select {
	case <-exited:
	case <-time.After(20 * time.Second):
		t.Fatal("ffmpeg still publishing after the kick")
	}
	var e map[string]string
	if st := getJSON(t, "DELETE", base+"/api/streams/live/nosuch", &e); st != 404 || e["error"] != "stream not found" {
		t.Errorf("DELETE unknown stream = %d %v; want 404 stream not found", st, e)
	}
}

// sign makes an NMS signature for key valid until exp.
func sign(key streamKey, exp int64, secret string) string {
	e := strconv.FormatInt(exp, 10)
	sum := md5.Sum([]byte(key.String() + "-" + e + "-" + secret))
	return "sign=" + e + "-" + hex.EncodeToString(sum[:])
}

// TestSignedURLs: valid signatures pass; missing, expired and wrong ones
// are refused over RTMP (publish and play, with a clear status, then
// closed), HTTP-FLV and WS-FLV (403). Loopback gets no exception.
func TestSignedURLs(t *testing.T) {
	const secret = "s3cret"
	ts := startServer(t, func(c *config) { c.Secret, c.PublishAuth, c.PlayAuth = secret, true, true })
	key := streamKey{"live", "signed"}
	now := time.Now().Unix()
	cases := []struct {
		name, query string
		ok          bool
	}{
		{"valid", sign(key, now+60, secret), true},
		{"missing", "", false},
		{"expired", sign(key, now-1, secret), false},
		{"wrong secret", sign(key, now+60, "other"), false},
		{"other stream", sign(streamKey{"live", "x"}, now+60, secret), false},
		{"garbage", "sign=abc", false},
	}
	for _, tc := range cases {
		c := dialRTMP(t, ts.rtmpAddr, false)
		c.connect("live")
		sid := c.createStream()
		c.command(sid, "publish", nil, "signed?"+tc.query, "live")
		code := c.expectStatus()
		if tc.ok != (code == "NetStream.Publish.Start") || !tc.ok && code != "NetStream.Publish.Unauthorized" {
			t.Errorf("publish %s: status %s", tc.name, code)
		}
		if !tc.ok {
			if _, err := c.read(); err == nil {
				t.Errorf("publish %s: connection not closed", tc.name)
			}
		}
	}
	for _, tc := range cases {
		q := ""
		if tc.query != "" {
			q = "?" + tc.query
		}
		resp, err := http.Head(ts.httpURL("signed") + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if want := map[bool]int{true: 200, false: 403}[tc.ok]; resp.StatusCode != want {
			t.Errorf("HTTP-FLV %s: %d; want %d", tc.name, resp.StatusCode, want)
		}
		ws, err := dialWS(context.Background(), ts.httpAddr, "/live/signed.flv"+q)
		if (err == nil) != tc.ok {
			t.Errorf("WS-FLV %s: err %v", tc.name, err)
		}
		if ws != nil {
			ws.nc.Close()
		}
		c := dialRTMP(t, ts.rtmpAddr, false)
		c.connect("live")
		sid := c.createStream()
		c.command(sid, "play", nil, "signed"+q)
		code := c.expectStatus()
		if want := map[bool]string{true: "NetStream.Play.Reset", false: "NetStream.Play.Unauthorized"}[tc.ok]; code != want {
			t.Errorf("RTMP play %s: %s; want %s", tc.name, code, want)
		}
	}
	// A real encoder with a signed URL.
	key2 := streamKey{"live", "signed2"}
	if err := publish(t, context.Background(), testClip(t), ts.rtmpURL("signed2?"+sign(key2, now+60, secret))); err != nil {
		t.Errorf("ffmpeg with a valid signature: %v", err)
	}
	if err := publish(t, context.Background(), testClip(t), ts.rtmpURL("signed2")); err == nil {
		t.Errorf("ffmpeg without a signature was accepted")
	}
}

// TestHooks: the publish hook refuses by answer; unpublish and stop hooks
// get JSON with bytes.
func TestHooks(t *testing.T) {
	var mu sync.Mutex
	var got []hookBody
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var b hookBody
		json.NewDecoder(r.Body).Decode(&b)
		mu.Lock()
		got = append(got, b)
		mu.Unlock()
		if strings.HasPrefix(b.Name, "bad") {
			http.Error(w, "no", http.StatusForbidden)
		}
	}))
	defer hook.Close()
	ts := startServer(t, func(c *config) {
		c.OnPublish, c.OnPlay, c.OnUnpublish, c.OnStop = hook.URL+"/pub", hook.URL+"/play", hook.URL+"/unpub", hook.URL+"/stop"
	})
	bad := dialRTMP(t, ts.rtmpAddr, false)
	bad.connect("live")
	bad.command(bad.createStream(), "publish", nil, "bad1", "live")
	if code := bad.expectStatus(); code != "NetStream.Publish.Unauthorized" {
		t.Errorf("refused publish: %s", code)
	}
	resp, err := http.Get(ts.httpURL("bad2"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("refused HTTP play: %d", resp.StatusCode)
	}
	if err := publish(t, context.Background(), testClip(t), ts.rtmpURL("good?token=1")); err != nil {
		t.Fatalf("accepted publish: %v", err)
	}
	waitFor(t, "the unpublish hook", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range got {
			if b.Action == "unpublish" {
				return true
			}
		}
		return false
	})
	mu.Lock()
	defer mu.Unlock()
	var actions []string
	for _, b := range got {
		actions = append(actions, b.Action+":"+b.Name)
		if b.Action == "publish" && b.Name == "good" && (b.Query != "token=1" || b.App != "live" || b.IP != "127.0.0.1" || len(b.ID) != 8) {
			t.Errorf("publish hook body = %+v", b)
		}
		if b.Action == "unpublish" && b.Bytes < 100000 {
			t.Errorf("unpublish hook bytes = %d", b.Bytes)
		}
	}
	if want := "publish:bad1 play:bad2 publish:good unpublish:good"; strings.Join(actions, " ") != want {
		t.Errorf("hooks called: %v; want %s", actions, want)
	}
}

// TestAPIBasicAuth: with credentials set, the API, /metrics and the admin
// page answer 401 with NMS's realm unless they are given.
func TestAPIBasicAuth(t *testing.T) {
	ts := startServer(t, func(c *config) { c.APIUser, c.APIPass = "admin", "pw" })
	for _, path := range []string{"/api/streams", "/api/server", "/metrics", "/admin/"} {
		for _, tc := range []struct {
			user, pass string
			want       int
		}{{"", "", 401}, {"admin", "wrong", 401}, {"other", "pw", 401}, {"admin", "pw", 200}} {
			req, _ := http.NewRequest("GET", "http://"+ts.httpAddr+path, nil)
			if tc.user != "" {
				req.SetBasicAuth(tc.user, tc.pass)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("GET %s as %q/%q = %d; want %d", path, tc.user, tc.pass, resp.StatusCode, tc.want)
			}
			if tc.want == 401 && resp.Header.Get("WWW-Authenticate") != `Basic realm="Authorization Required"` {
				t.Errorf("GET %s: WWW-Authenticate = %q", path, resp.Header.Get("WWW-Authenticate"))
			}
		}
	}
}

// TestMetrics scrapes /metrics during a publish with a viewer and parses
// every line of the text format.
func TestMetrics(t *testing.T) {
	ts := startServer(t, nil)
	longPublish(t, ts.rtmpURL("m"))
	waitFor(t, "the publisher", func() bool { return ts.live(streamKey{"live", "m"}) })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go httpGetFLV(ctx, ts.httpURL("m"))
	waitFor(t, "the viewer", func() bool { return ts.viewers(streamKey{"live", "m"}) == 1 })
	resp, err := http.Get("http://" + ts.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("Content-Type = %q", ct)
	}
	values := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "# HELP ") || strings.HasPrefix(line, "# TYPE ") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		f, err := strconv.ParseFloat(val, 64)
		if !ok || err != nil || !strings.HasPrefix(name, "gms_") {
			t.Errorf("bad metrics line %q", line)
			continue
		}
		values[name] = f
	}
	for name, want := range map[string]float64{
		"gms_streams": 1, `gms_viewers{protocol="http"}`: 1, `gms_connections_active{protocol="rtmp"}`: 1,
	} {
		if values[name] != want {
			t.Errorf("%s = %v; want %v", name, values[name], want)
		}
	}
	for _, name := range []string{"gms_received_bytes_total", "gms_sent_bytes_total", "gms_process_cpu_seconds_total", "gms_goroutines"} {
		if values[name] <= 0 {
			t.Errorf("%s = %v; want > 0", name, values[name])
		}
	}
}

// TestEvents follows /api/events through publish, play, stop and unpublish.
func TestEvents(t *testing.T) {
	ts := startServer(t, nil)
	resp, err := http.Get("http://" + ts.httpAddr + "/api/events")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type = %q", ct)
	}
	events := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if ev, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				events <- ev
			}
		}
	}()
	waitFor(t, "the event watcher", func() bool {
		var n int
		ts.hub.call(func() { n = len(ts.hub.watchers) })
		return n == 1
	})
	pub := dialRTMP(t, ts.rtmpAddr, false)
	pub.connect("live")
	sid := pub.createStream()
	pub.command(sid, "publish", nil, "ev", "live")
	pub.expectStatus()
	viewer := make(chan error, 1)
	go func() {
		_, _, err := httpGetFLV(context.Background(), "http://"+ts.httpAddr+"/live/ev.flv?x") // ends at unpublish
		viewer <- err
	}()
	waitFor(t, "the viewer", func() bool { return ts.viewers(streamKey{"live", "ev"}) == 1 })
	pub.command(sid, "deleteStream", nil, float64(sid))
	if err := <-viewer; err != nil {
		t.Errorf("viewer: %v", err)
	}
	var got []string
	for len(got) < 4 {
		select {
		case ev := <-events:
			got = append(got, ev)
		case <-time.After(20 * time.Second):
			t.Fatalf("events so far: %v", got)
		}
	}
	if want := "publish play unpublish stop"; strings.Join(got, " ") != want {
		t.Errorf("events = %v; want %s", got, want)
	}
}

// selfSignedCert writes a certificate and key for 127.0.0.1 and returns
// their paths.
func selfSignedCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "gms test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

// TestTLS publishes over RTMPS with ffmpeg and plays over HTTPS-FLV with
// ffprobe, against a certificate the test makes.
func TestTLS(t *testing.T) {
	needFFmpeg(t)
	cert, key := selfSignedCert(t)
	ts := startServer(t, func(c *config) {
		c.RTMPSAddr, c.HTTPSAddr, c.TLSCert, c.TLSKey = "127.0.0.1:0", "127.0.0.1:0", cert, key
	})
	rtmps := "rtmps://" + ts.rtmpsLn.Addr().String() + "/live/tls"
	https := "https://" + ts.httpsLn.Addr().String() + "/live/tls.flv"
	longPublish(t, rtmps)
	waitFor(t, "the RTMPS publisher", func() bool { return ts.live(streamKey{"live", "tls"}) })
	got := ffprobeStreams(t, https)
	if !strings.Contains(got, "codec_name=h264") || !strings.Contains(got, "codec_name=aac") {
		t.Errorf("HTTPS-FLV streams:\n%s", got)
	}
	got = ffprobeStreams(t, rtmps)
	if !strings.Contains(got, "codec_name=h264") || !strings.Contains(got, "codec_name=aac") {
		t.Errorf("RTMPS streams:\n%s", got)
	}
}

// TestConnectionLimits: past -max-conns-per-ip (and -max-conns) a new
// connection is closed at once with a log line; a freed slot is reusable,
// and the limit spans RTMP and HTTP.
func TestConnectionLimits(t *testing.T) {
	ts := startServer(t, func(c *config) { c.MaxConnsIP = 3 })
	var conns []net.Conn
	for i := range 3 {
		addr := ts.rtmpAddr
		if i == 2 {
			addr = ts.httpAddr
		}
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	// Let the server accept them all before the next one.
	waitFor(t, "three accepted", func() bool {
		ts.web.limits().mu.Lock()
		defer ts.web.limits().mu.Unlock()
		return ts.web.limits().total == 3
	})
	extra, err := net.Dial("tcp", ts.rtmpAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	extra.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := extra.Read(make([]byte, 1)); err == nil {
		t.Fatalf("fourth connection from one IP got %d bytes; want it closed", n)
	}
	if got := ts.hub.counters.tooManyConns.Load(); got != 1 {
		t.Errorf("refused count = %d; want 1", got)
	}
	if !strings.Contains(ts.logs.String(), "max-conns-per-ip 3") {
		t.Errorf("no log line naming the limit")
	}
	conns[0].Close()
	waitFor(t, "the slot to free", func() bool {
		ts.web.limits().mu.Lock()
		defer ts.web.limits().mu.Unlock()
		return ts.web.limits().total == 2
	})
	c := dialRTMP(t, ts.rtmpAddr, false)
	c.connect("live")
}

func (s *syncBuffer) capacity() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Cap()
}

// openFDs counts this process's open file descriptors (Linux).
func openFDs(t *testing.T) int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(entries)
}

// TestNoLeaks runs a thousand publish/play/disconnect cycles over every
// protocol, with clients that leave in every way (clean close, abrupt
// close mid-stream, close during the handshake), then checks that
// goroutines, open files and the heap are back where they started.
func TestNoLeaks(t *testing.T) {
	cycles := 1000
	if testing.Short() {
		cycles = 100
	}
	ts := startServer(t, nil)
	runtime.GC()
	baseG, baseFD := runtime.NumGoroutine(), openFDs(t)
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	logsBefore := ts.logs.capacity()

	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := range cycles {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			leakCycle(t, ts, i)
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	waitFor(t, "every stream to go", func() bool { return len(ts.hub.snapshot()) == 0 })
	var g, fds int
	waitFor(t, "goroutines and files back to the start", func() bool {
		g, fds = runtime.NumGoroutine(), openFDs(t)
		return g <= baseG+2 && fds <= baseFD+2
	})
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	// The test keeps the server's log in memory; that is not the server's.
	grew := int64(after.HeapInuse) - int64(before.HeapInuse) - int64(ts.logs.capacity()-logsBefore)
	t.Logf("%d cycles: goroutines %d -> %d, open files %d -> %d, heap in use %+d bytes", cycles, baseG, g, baseFD, fds, grew)
	if grew > 1<<20 {
		t.Errorf("heap grew by %d bytes over %d cycles", grew, cycles)
	}
}

// dialRTMPOwned is dialRTMP for callers that close the connection
// themselves: it registers no cleanup, so that a thousand of them leave
// nothing behind in the test's own heap.
func dialRTMPOwned(t *testing.T, addr string, signed bool) *rtmpClient {
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	if err := clientHandshake(nc, signed); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return &rtmpClient{t: t, nc: nc, chunkSize: 128, cr: newChunkReader(bufio.NewReader(nc))}
}

// leakCycle is one publisher with three players, ending in a way chosen by i.
func leakCycle(t *testing.T, ts *testServer, i int) {
	name := fmt.Sprintf("leak%d", i)
	if i%10 == 9 { // a client that leaves during the handshake
		c, err := net.Dial("tcp", ts.rtmpAddr)
		if err == nil {
			c.Write([]byte{3, 1, 2, 3})
			c.Close()
		}
		return
	}
	pub := dialRTMPOwned(t, ts.rtmpAddr, false)
	pub.connect("live")
	sid := pub.createStream()
	pub.command(sid, "publish", nil, name, "live")
	pub.expectStatus()
	pub.send(csidData, msgDataAMF0, sid, 0, testMeta)
	pub.send(csidAudio, msgAudio, sid, 0, testAudioHeader)
	pub.send(csidVideo, msgVideo, sid, 0, testVideoHeader)
	pub.send(csidVideo, msgVideo, sid, 0, testVideo(true, 2000))

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	httpDone, httpStarted := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(httpDone)
		req, _ := http.NewRequestWithContext(ctx, "GET", ts.httpURL(name), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("GET: %v", err)
			close(httpStarted)
			return
		}
		resp.Body.Read(make([]byte, 100))
		close(httpStarted)
		{
			if i%2 == 0 {
				resp.Body.Close() // leaves mid-stream
			} else {
				io.Copy(io.Discard, resp.Body) // stays to the end
				resp.Body.Close()
			}
		}
	}()
	ws, err := dialWS(ctx, ts.httpAddr, "/live/"+name+".flv")
	if err == nil {
		ws.readFrame()
		if i%3 == 0 {
			ws.writeFrame(wsOpClose, nil)
		}
		ws.nc.Close()
	}
	play := dialRTMPOwned(t, ts.rtmpAddr, i%2 == 0)
	play.connect("live")
	play.command(play.createStream(), "play", nil, name)
	play.expectStatus()
	play.nc.Close()

	<-httpStarted // it must have joined, or it would wait for the next publisher
	for j := range 5 {
		pub.send(csidVideo, msgVideo, sid, uint32(40*(j+1)), testVideo(false, 1000))
	}
	if i%4 == 0 {
		pub.nc.Close() // vanishes without deleteStream
	} else {
		pub.command(sid, "deleteStream", nil, float64(sid))
		pub.nc.Close()
	}
	<-httpDone
}

// TestStress has publishers and HTTP-FLV/WS-FLV viewers come and go at
// random, and checks every viewer's stream: a valid FLV, starting with
// metadata, sequence headers and a keyframe; timestamps never going
// backwards; and every frame after the start, in order, unless the
// server says it skipped some (then it must resume at a keyframe).
func TestStress(t *testing.T) {
	ts := startServer(t, nil)
	dur := 6 * time.Second
	if testing.Short() {
		dur = 2 * time.Second
	}
	sessions, frames := churn(t, ts, time.Now().Add(dur))
	t.Logf("%d viewer sessions checked, %d frames", sessions, frames)
	if sessions < 20 {
		t.Errorf("only %d viewer sessions got frames", sessions)
	}
}

// churn runs 3 publishers and 12 viewers that come and go until stop,
// checking every viewer's stream; it returns the viewer sessions that got
// frames and the frames checked.
func churn(t *testing.T, ts *testServer, stop time.Time) (sessions, frames int) {
	var wg sync.WaitGroup
	var viewersChecked, framesChecked atomicCounter
	for p := range 3 {
		wg.Go(func() {
			for round := 0; time.Now().Before(stop); round++ {
				stressPublish(t, ts, fmt.Sprintf("s%d", p), stop, round)
			}
		})
	}
	for v := range 12 {
		wg.Go(func() {
			for i := 0; time.Now().Before(stop); i++ {
				name := fmt.Sprintf("s%d", (v+i)%3)
				n := stressView(t, ts, name, v%2 == 0, time.Duration(50+(v*37+i*91)%400)*time.Millisecond)
				if n > 0 {
					viewersChecked.add(1)
					framesChecked.add(n)
				}
			}
		})
	}
	wg.Wait()
	return viewersChecked.load(), framesChecked.load()
}

// TestSoak churns for GMS_SOAK (e.g. 1h), printing goroutines, open files
// and the heap once a minute, then checks that they are back where they
// started once the churn stops.
func TestSoak(t *testing.T) {
	d, _ := time.ParseDuration(os.Getenv("GMS_SOAK"))
	if d <= 0 {
		t.Skip("set GMS_SOAK=1h to run the soak test")
	}
	ts := startServer(t, func(c *config) { c.LogLevel = slog.LevelWarn })
	sample := func() (g, fds int, heap uint64) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return runtime.NumGoroutine(), openFDs(t), ms.HeapInuse
	}
	g0, fd0, h0 := sample()
	fmt.Printf("soak start: goroutines %d, open files %d, heap %d\n", g0, fd0, h0)
	end := time.Now().Add(d)
	var sessions, frames int
	for minute := 1; time.Now().Before(end); minute++ {
		s, f := churn(t, ts, minTime(end, time.Now().Add(time.Minute)))
		sessions, frames = sessions+s, frames+f
		g, fds, heap := sample()
		fmt.Printf("soak minute %d: sessions %d, frames %d, goroutines %d, open files %d, heap %d\n",
			minute, sessions, frames, g, fds, heap)
		if t.Failed() {
			return
		}
	}
	waitFor(t, "every stream to go", func() bool { return len(ts.hub.snapshot()) == 0 })
	g, fds, heap := sample()
	fmt.Printf("soak end: goroutines %d, open files %d, heap %d\n", g, fds, heap)
	if g > g0+2 || fds > fd0+2 || heap > h0+4<<20 {
		t.Errorf("after %v: goroutines %d -> %d, open files %d -> %d, heap %d -> %d", d, g0, g, fd0, fds, h0, heap)
	}
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

type atomicCounter struct {
	mu sync.Mutex
	n  int
}

func (c *atomicCounter) add(d int) { c.mu.Lock(); c.n += d; c.mu.Unlock() }
func (c *atomicCounter) load() int { c.mu.Lock(); defer c.mu.Unlock(); return c.n }

// stressPublish publishes name for a random while: 100 frames a second,
// a keyframe every 10, each frame's payload carrying its sequence number.
func stressPublish(t *testing.T, ts *testServer, name string, stop time.Time, round int) {
	c := dialRTMPOwned(t, ts.rtmpAddr, false)
	defer c.nc.Close()
	c.connect("live")
	sid := c.createStream()
	c.command(sid, "publish", nil, name, "live")
	if c.expectStatus() != "NetStream.Publish.Start" {
		time.Sleep(50 * time.Millisecond) // the last round's publisher is still leaving
		return
	}
	c.send(csidData, msgDataAMF0, sid, 0, testMeta)
	c.send(csidAudio, msgAudio, sid, 0, testAudioHeader)
	c.send(csidVideo, msgVideo, sid, 0, testVideoHeader)
	frames := 50 + (round*53)%150
	for seq := range frames {
		if time.Now().After(stop) {
			break
		}
		payload := testVideo(seq%10 == 0, 200)
		binary.BigEndian.PutUint32(payload[5:], uint32(seq))
		c.send(csidVideo, msgVideo, sid, uint32(seq*10), payload)
		time.Sleep(10 * time.Millisecond)
	}
	c.command(sid, "deleteStream", nil, float64(sid))
}

// stressView watches name for a while over HTTP-FLV or WS-FLV and checks
// what it got; it returns the number of frames checked.
func stressView(t *testing.T, ts *testServer, name string, ws bool, watch time.Duration) int {
	ctx, cancel := context.WithTimeout(context.Background(), watch)
	defer cancel()
	var data []byte
	if ws {
		c, err := dialWS(ctx, ts.httpAddr, "/live/"+name+".flv")
		if err != nil {
			return 0
		}
		go func() { <-ctx.Done(); c.nc.Close() }()
		data, _ = c.readFLV()
	} else {
		req, _ := http.NewRequestWithContext(ctx, "GET", ts.httpURL(name), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		data, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	if len(data) == 0 {
		return 0 // no publisher came while it waited
	}
	fr, err := newFLVReader(bytes.NewReader(data))
	if err != nil {
		t.Errorf("%s: %v", name, err)
		return 0
	}
	var kinds []string
	lastSeq, lastTime, n := -1, uint32(0), 0
	for {
		tag, err := fr.next()
		if err != nil {
			break // a cut-off last tag is how a viewer that leaves ends
		}
		switch {
		case tag.Type == tagScript:
			kinds = append(kinds, "meta")
			lastSeq = -1 // a new publisher: its frames count from 0 again
			lastTime = 0
			continue
		case tag.Type == tagAudio:
			kinds = append(kinds, "aseq")
			continue
		}
		header, key := videoInfo(tag.Data)
		if header {
			kinds = append(kinds, "vseq")
			continue
		}
		seq := int(binary.BigEndian.Uint32(tag.Data[5:]))
		if lastSeq < 0 {
			if !key || len(kinds) < 3 || strings.Join(kinds[len(kinds)-3:], " ") != "meta aseq vseq" {
				t.Errorf("%s: starts with %v then frame %d (key %v)", name, kinds, seq, key)
				return n
			}
		} else if seq != lastSeq+1 && !key {
			t.Errorf("%s: frame %d after %d, not at a keyframe", name, seq, lastSeq)
			return n
		}
		if tag.Time < lastTime {
			t.Errorf("%s: time %d after %d", name, tag.Time, lastTime)
		}
		lastSeq, lastTime = seq, tag.Time
		kinds = append(kinds, "frame")
		n++
	}
	return n
}

// TestHostileInput sends each kind of bad input the README's table lists,
// checks the log line that says why the connection ended, and then that a
// fresh publish and play still work.
func TestHostileInput(t *testing.T) {
	ts := startServer(t, func(c *config) { c.PingTimeout = 2 * time.Second })
	handshaken := func() net.Conn {
		c, err := net.Dial("tcp", ts.rtmpAddr)
		if err != nil {
			t.Fatal(err)
		}
		if err := clientHandshake(c, false); err != nil {
			t.Fatal(err)
		}
		return c
	}
	connected := func() *rtmpClient {
		c := dialRTMPOwned(t, ts.rtmpAddr, false)
		c.connect("live")
		return c
	}
	rawHTTP := func(req string) string {
		c, err := net.Dial("tcp", ts.httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		io.WriteString(c, req)
		b, _ := io.ReadAll(c)
		return string(b)
	}
	for _, tc := range []struct {
		name    string
		send    func()
		wantLog string
	}{
		{"random bytes instead of a handshake", func() {
			c, _ := net.Dial("tcp", ts.rtmpAddr)
			c.Write(bytes.Repeat([]byte{0xAB}, 3000))
			io.Copy(io.Discard, c)
			c.Close()
		}, "unsupported handshake version 171"},
		{"disconnect during the handshake", func() {
			c, _ := net.Dial("tcp", ts.rtmpAddr)
			c.Write([]byte{3, 0, 0})
			c.Close()
		}, `reason="peer closed"`},
		{"chunk on a stream with no header", func() {
			c := handshaken()
			c.Write([]byte{0xC5, 1, 2, 3})
			io.Copy(io.Discard, c)
			c.Close()
		}, "continuation chunk on a chunk stream with no header"},
		{"message length over the limit", func() {
			c := handshaken()
			c.Write([]byte{0x03, 0, 0, 0, 0xFF, 0xFF, 0xFF, 20, 0, 0, 0, 0})
			io.Copy(io.Discard, c)
			c.Close()
		}, "message longer than limit"},
		{"too many chunk streams", func() {
			c := handshaken()
			for csid := range 70 {
				c.Write(appendChunks(nil, uint32(csid+3), 99, 0, 0, []byte{1, 2, 3}, 128))
			}
			io.Copy(io.Discard, c)
			c.Close()
		}, "too many chunk streams"},
		{"chunk size 0", func() {
			c := handshaken()
			c.Write(appendChunks(nil, 2, msgSetChunkSize, 0, 0, []byte{0, 0, 0, 0}, 128))
			io.Copy(io.Discard, c)
			c.Close()
		}, "invalid chunk size"},
		{"malformed AMF command", func() {
			c := handshaken()
			c.Write(appendChunks(nil, 3, msgCommandAMF0, 0, 0, []byte{0x02, 0xFF, 0xFF, 'c'}, 128))
			io.Copy(io.Discard, c)
			c.Close()
		}, "bad command"},
		{"AMF nested 100 deep", func() {
			c := handshaken()
			body := amf0AppendAll(nil, "connect", 1.0)
			body = append(body, bytes.Repeat([]byte{0x0A, 0, 0, 0, 1}, 100)...)
			c.Write(appendChunks(nil, 3, msgCommandAMF0, 0, 0, body, 128))
			io.Copy(io.Discard, c)
			c.Close()
		}, "bad command"},
		{"publish before connect", func() {
			c := handshaken()
			c.Write(appendChunks(nil, 3, msgCommandAMF0, 1, 0, amf0AppendAll(nil, "publish", 0.0, nil, "x"), 128))
			io.Copy(io.Discard, c)
			c.Close()
		}, "publish before connect"},
		{"bad stream name", func() {
			c := connected()
			c.command(c.createStream(), "publish", nil, "../../etc/passwd", "live")
			c.expectStatus()
			c.nc.Close()
		}, "invalid name"},
		{"publisher killed mid-message", func() {
			c := connected()
			c.command(c.createStream(), "publish", nil, "killed", "live")
			c.expectStatus()
			b := appendChunks(nil, csidVideo, msgVideo, 1, 0, testVideo(true, 5000), 128)
			c.nc.Write(b[:len(b)/2])
			c.nc.Close()
		}, "stream=killed reason=\"peer closed\""},
		{"peer silent without FIN", func() {
			c := connected()
			c.command(c.createStream(), "publish", nil, "silent", "live")
			c.expectStatus()
			time.Sleep(3 * time.Second) // past the 2 s ping timeout of this server
			c.nc.Close()
		}, "stream=silent reason=timeout"},
		{"HTTP path with a dot", func() {
			if r := rawHTTP("GET /live/te.st.flv HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); !strings.HasPrefix(r, "HTTP/1.1 400") {
				t.Errorf("got %.40q", r)
			}
		}, ""},
		{"HTTP path escaping the root", func() {
			if r := rawHTTP("GET /live/../../etc/passwd HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); !strings.HasPrefix(r, "HTTP/1.1 3") && !strings.HasPrefix(r, "HTTP/1.1 4") {
				t.Errorf("got %.40q", r)
			}
		}, ""},
		{"HTTP garbage request", func() {
			if r := rawHTTP("\x00\x01\x02 garbage\r\n\r\n"); !strings.HasPrefix(r, "HTTP/1.1 400") {
				t.Errorf("got %.40q", r)
			}
		}, ""},
		{"HTTP header over 16 KiB", func() {
			if r := rawHTTP("GET /live/x.flv HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", 40000) + "\r\n\r\n"); !strings.HasPrefix(r, "HTTP/1.1 431") {
				t.Errorf("got %.40q", r)
			}
		}, ""},
		{"WebSocket upgrade with a bad key", func() {
			if r := rawHTTP("GET /live/x.flv HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: bad\r\n\r\n"); !strings.HasPrefix(r, "HTTP/1.1 400") {
				t.Errorf("got %.40q", r)
			}
		}, ""},
		{"WebSocket unmasked frame", func() {
			ws, err := dialWS(context.Background(), ts.httpAddr, "/live/wsbad.flv")
			if err != nil {
				t.Fatal(err)
			}
			ws.nc.Write([]byte{0x82, 0x01, 0x00})
			io.Copy(io.Discard, ws.nc)
			ws.nc.Close()
		}, "unmasked client frame"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.send()
			if tc.wantLog != "" {
				waitFor(t, "the log line", func() bool { return strings.Contains(ts.logs.String(), tc.wantLog) })
			}
			checkPublishPlay(t, ts)
		})
	}
}

// checkPublishPlay publishes a few frames and checks an HTTP-FLV viewer
// gets them: the server is still fine.
func checkPublishPlay(t *testing.T, ts *testServer) {
	t.Helper()
	name := "fresh" + newClientID()
	pub := dialRTMPOwned(t, ts.rtmpAddr, false)
	defer pub.nc.Close()
	pub.connect("live")
	sid := pub.createStream()
	pub.command(sid, "publish", nil, name, "live")
	if code := pub.expectStatus(); code != "NetStream.Publish.Start" {
		t.Fatalf("fresh publish: %s", code)
	}
	pub.send(csidData, msgDataAMF0, sid, 0, testMeta)
	pub.send(csidAudio, msgAudio, sid, 0, testAudioHeader)
	pub.send(csidVideo, msgVideo, sid, 0, testVideoHeader)
	pub.send(csidVideo, msgVideo, sid, 0, testVideo(true, 100))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan []byte, 1)
	go func() {
		_, data, _ := httpGetFLV(ctx, ts.httpURL(name))
		done <- data
	}()
	waitFor(t, "the fresh viewer", func() bool { return ts.viewers(streamKey{"live", name}) == 1 })
	pub.command(sid, "deleteStream", nil, float64(sid))
	_, tags := parseFLV(t, <-done)
	if len(mediaTags(tags)) != 3 {
		t.Errorf("fresh viewer got %d media tags; want 3", len(mediaTags(tags)))
	}
}
