package main

// Admission: signed URLs, hooks and HTTP Basic auth, against a live server.

import (
	"bufio"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

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
	// OBS style: the signature on the server URL, so it comes with the app.
	obs := dialRTMP(t, ts.rtmpAddr, false)
	obs.connect("live?" + sign(streamKey{"live", "obs"}, now+60, secret))
	obs.command(obs.createStream(), "publish", nil, "obs", "live")
	if code := obs.expectStatus(); code != "NetStream.Publish.Start" {
		t.Errorf("publish with the signature on the app: %s", code)
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
		actions = append(actions, string(b.Action)+":"+b.Name)
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

// rtmpTryPublish connects, asks to publish name (with its query) and
// returns the onStatus code and description the server answers.
func rtmpTryPublish(t *testing.T, addr, name string) (code, desc string, c *rtmpClient) {
	t.Helper()
	c = dialRTMP(t, addr, false)
	c.connect("live")
	id := c.createStream()
	c.command(id, "publish", nil, name, "live")
	cmd := c.expectCommand("onStatus")
	obj, _ := cmd.Args[0].(amfObject)
	return obj.String("code"), obj.String("description"), c
}

// TestNoSignLeaks is the stream hijack through the API: an anonymous
// client reads the stream list, one stream, the event stream and (as an
// operator would share it) the log, looking for the publisher's sign, and
// tries to publish with what it found.
func TestNoSignLeaks(t *testing.T) {
	ts := startServer(t, func(c *config) { c.Secret, c.PublishAuth, c.PlayAuth = "S3CRET", true, true })
	base := "http://" + ts.httpAddr
	events, err := http.Get(base + "/api/events")
	if err != nil {
		t.Fatal(err)
	}
	defer events.Body.Close()
	var sse syncBuffer
	go io.Copy(&sse, events.Body)
	waitFor(t, "the event stream's watcher", func() bool {
		var n int
		ts.hub.call(func() { n = len(ts.hub.watchers) })
		return n == 2 // the hooks' notifier and this stream
	})
	key := streamKey{"live", "cam"}
	exp := time.Now().Add(time.Hour).Unix()
	pubSign := sign(key, exp, "S3CRET")
	hash := pubSign[strings.LastIndexByte(pubSign, '-')+1:]
	if code, _, _ := rtmpTryPublish(t, ts.rtmpAddr, "cam?"+pubSign+"&token=T0KEN"); code != "NetStream.Publish.Start" {
		t.Fatalf("publish with a valid sign: %s", code)
	}
	playSign := sign(key, exp, "S3CRET")
	if resp, _, _ := httpGetFLVFor(base+"/live/cam.flv?"+playSign, 300*time.Millisecond); resp == nil || resp.StatusCode != 200 {
		t.Fatalf("play with a valid sign: %v", resp)
	}
	waitFor(t, "the stream in the API", func() bool { return ts.live(key) })

	var seen strings.Builder
	for _, path := range []string{"/api/streams", "/api/streams/live/cam"} {
		r, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(&seen, r.Body)
		r.Body.Close()
	}
	waitFor(t, "the publish and play events", func() bool {
		return strings.Contains(sse.String(), "event: publish") && strings.Contains(sse.String(), "event: play")
	})
	seen.WriteString(sse.String())
	seen.WriteString(ts.logs.String())
	for _, secret := range []string{hash, "T0KEN", "S3CRET"} {
		if strings.Contains(seen.String(), secret) {
			t.Errorf("the API, events or log reveal %q", secret)
		}
	}
	if !strings.Contains(seen.String(), fmt.Sprintf("sign=%d-***", exp)) {
		t.Errorf("want the sign's expiry kept and its hash hidden; saw:\n%s", seen.String())
	}
	// What the API shows does not publish (on another name, so that the
	// live publisher does not decide it).
	if code, _, _ := rtmpTryPublish(t, ts.rtmpAddr, fmt.Sprintf("cam2?sign=%d-***", exp)); code != "NetStream.Publish.Unauthorized" {
		t.Errorf("publish with the API's sign: %s; want Unauthorized", code)
	}
}

// httpGetFLVFor GETs url and reads the body for d, then closes it.
func httpGetFLVFor(url string, d time.Duration) (*http.Response, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return httpGetFLV(ctx, url)
}

// TestPlaySignCannotPublish: with a publish secret of its own, a viewer's
// sign (made with the play secret) is refused for publishing, on an idle
// name and in place of a silent publisher; with one secret for both, the
// server warns that it can.
func TestPlaySignCannotPublish(t *testing.T) {
	ts := startServer(t, func(c *config) {
		c.Secret, c.PublishSecret, c.PublishAuth, c.PlayAuth = "PLAY", "PUBLISH", true, true
	})
	exp := time.Now().Add(time.Hour).Unix()
	viewerSign := sign(streamKey{"live", "a"}, exp, "PLAY")
	if code, _, _ := rtmpTryPublish(t, ts.rtmpAddr, "a?"+viewerSign); code != "NetStream.Publish.Unauthorized" {
		t.Errorf("publish with a viewer's sign = %s; want Unauthorized", code)
	}
	if code, _, _ := rtmpTryPublish(t, ts.rtmpAddr, "a?"+sign(streamKey{"live", "a"}, exp, "PUBLISH")); code != "NetStream.Publish.Start" {
		t.Errorf("publish with a publish sign = %s; want Start", code)
	}
	if resp, _, _ := httpGetFLVFor("http://"+ts.httpAddr+"/live/a.flv?"+viewerSign, 200*time.Millisecond); resp == nil || resp.StatusCode != 200 {
		t.Errorf("play with a viewer's sign: %v; want 200", resp)
	}
	if resp, _, _ := httpGetFLVFor("http://"+ts.httpAddr+"/live/a.flv?"+sign(streamKey{"live", "a"}, exp, "PUBLISH"), 200*time.Millisecond); resp == nil || resp.StatusCode != 403 {
		t.Errorf("play with a publish sign: %v; want 403", resp)
	}

	var warned strings.Builder
	_, err := parseFlags([]string{"-auth-secret", "S", "-auth-publish", "-auth-play"}, nil, io.Discard, func(msg string, _ ...any) { warned.WriteString(msg) })
	if err != nil || !strings.Contains(warned.String(), "-auth-publish-secret") {
		t.Errorf("one secret for both: err %v, warning %q; want a warning naming -auth-publish-secret", err, warned.String())
	}
	cfg, err := parseFlags([]string{"-auth-publish-secret", "P", "-auth-publish"}, nil, io.Discard, func(string, ...any) {})
	if err != nil || cfg.PublishSecret != "P" {
		t.Errorf("-auth-publish with only -auth-publish-secret: %v", err)
	}
	if _, err := parseFlags([]string{"-auth-publish-secret", "P", "-auth-play"}, nil, io.Discard, func(string, ...any) {}); err == nil {
		t.Errorf("-auth-play without -auth-secret: no error")
	}
}

// TestRefusalsSayNothing: a refused client learns that it was refused,
// not why: a hook URL's user, password and token stay out of the RTMP
// status and the HTTP body.
func TestRefusalsSayNothing(t *testing.T) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusForbidden)
	}))
	defer hook.Close()
	hookURL := strings.Replace(hook.URL, "http://", "http://hookuser:hookpass@", 1) + "/deny?token=HOOKTOKEN"
	ts := startServer(t, func(c *config) { c.OnPublish, c.OnPlay = hookURL, hookURL })
	code, desc, _ := rtmpTryPublish(t, ts.rtmpAddr, "x")
	if code != "NetStream.Publish.Unauthorized" || desc != refusalText {
		t.Errorf("refused publish: %s %q; want Unauthorized %q", code, desc, refusalText)
	}
	resp, body, _ := httpGetFLVFor("http://"+ts.httpAddr+"/live/x.flv", time.Second)
	if resp == nil || resp.StatusCode != 403 {
		t.Fatalf("refused play: %v", resp)
	}
	for _, secret := range []string{"hookuser", "hookpass", "HOOKTOKEN", "/deny"} {
		if strings.Contains(desc, secret) || strings.Contains(string(body), secret) {
			t.Errorf("a refused client is told %q (status %q, body %q)", secret, desc, body)
		}
	}
}

// TestAPIAcrossOrigins is the web page that drives the API: only origins
// that -api-allow-origin names may read it or kick, a wildcard may read
// and never kick, and media stays open to every page.
func TestAPIAcrossOrigins(t *testing.T) {
	preflight := func(h http.Handler, path, origin, method string) (allowOrigin, allowMethods string) {
		r := httptest.NewRequest("OPTIONS", path, nil)
		r.Header.Set("Origin", origin)
		r.Header.Set("Access-Control-Request-Method", method)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Header().Get("Access-Control-Allow-Origin"), w.Header().Get("Access-Control-Allow-Methods")
	}
	named := newTestHandler(t, func(c *config) { c.APIAllowOrigin = "https://ops.example, https://admin.example" })
	if o, m := preflight(named, "/api/streams/live/x", "https://admin.example", "DELETE"); o != "https://admin.example" || !strings.Contains(m, "DELETE") {
		t.Errorf("named origin's DELETE preflight: origin %q, methods %q", o, m)
	}
	if o, m := preflight(named, "/api/streams/live/x", "https://evil.example", "DELETE"); o != "" || m != "" {
		t.Errorf("other origin's DELETE preflight: origin %q, methods %q; want neither", o, m)
	}
	wild := newTestHandler(t, func(c *config) { c.APIAllowOrigin = "*" })
	if o, m := preflight(wild, "/api/clients/ABC", "https://evil.example", "DELETE"); o != "*" || strings.Contains(m, "DELETE") {
		t.Errorf("wildcard DELETE preflight: origin %q, methods %q; want reads only", o, m)
	}
	none := newTestHandler(t, nil)
	if o, _ := preflight(none, "/live/x.flv", "https://any.example", "GET"); o != "*" {
		t.Errorf("media preflight: origin %q; want *", o)
	}
	if o, _ := preflight(none, "/metrics", "https://any.example", "GET"); o != "" {
		t.Errorf("/metrics preflight with no -api-allow-origin: origin %q; want none", o)
	}
}

// TestKicksNeedControl: with no API credentials, only this machine may
// kick; from elsewhere a kick is 403 with a clear body while reading stays
// open. With credentials, a kick needs them, wherever it comes from.
func TestKicksNeedControl(t *testing.T) {
	do := func(h http.Handler, method, path, remote, user string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, path, nil)
		r.RemoteAddr = remote
		if user != "" {
			r.SetBasicAuth(user, "pw")
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	open := newTestHandler(t, nil)
	for _, path := range []string{"/api/streams/live/x", "/api/clients/ABCDEFGH"} {
		if w := do(open, "DELETE", path, "203.0.113.9:4000", ""); w.Code != 403 || !strings.Contains(w.Body.String(), "-api-user") {
			t.Errorf("DELETE %s from afar = %d %q; want 403 naming -api-user", path, w.Code, w.Body.String())
		}
		if w := do(open, "DELETE", path, "[::1]:4000", ""); w.Code != 404 {
			t.Errorf("DELETE %s from this machine = %d; want 404 (nothing to kick)", path, w.Code)
		}
	}
	if w := do(open, "GET", "/api/streams", "203.0.113.9:4000", ""); w.Code != 200 {
		t.Errorf("GET /api/streams from afar = %d; want 200", w.Code)
	}
	locked := newTestHandler(t, func(c *config) { c.APIUser, c.APIPass = "admin", "pw" })
	if w := do(locked, "DELETE", "/api/streams/live/x", "127.0.0.1:4000", ""); w.Code != 401 {
		t.Errorf("DELETE without credentials from this machine = %d; want 401", w.Code)
	}
	if w := do(locked, "DELETE", "/api/streams/live/x", "203.0.113.9:4000", "admin"); w.Code != 404 {
		t.Errorf("DELETE with credentials from afar = %d; want 404", w.Code)
	}
}

// TestControlRefusesOtherSites: a page of another site, shown by a
// browser on this machine, cannot change state with a plain form POST
// (no CORS preflight), such as starting a relay that sends a stream to
// its own server; the admin page's own requests, tools without an
// Origin, and sites -api-allow-origin names still can.
func TestControlRefusesOtherSites(t *testing.T) {
	do := func(h http.Handler, method, path string, header map[string]string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "http://127.0.0.1:8000"+path, strings.NewReader("url=rtmp://evil.example/live/x&app=live&name=cam"))
		r.RemoteAddr = "127.0.0.1:4000"
		r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range header {
			r.Header.Set(k, v)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	evil := map[string]string{"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
	oldBrowser := map[string]string{"Origin": "https://evil.example"}
	h := newTestHandler(t, nil)
	for _, c := range []struct {
		method, path string
		header       map[string]string
		forbidden    bool
	}{
		{"POST", "/api/relay/push", evil, true},
		{"POST", "/api/relay/pull", oldBrowser, true},
		{"DELETE", "/api/relay/ABCDEFGH", evil, true},
		{"DELETE", "/api/streams/live/x", evil, true},
		{"DELETE", "/api/streams/live/x", map[string]string{"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:8000"}, false},
		{"DELETE", "/api/streams/live/x", map[string]string{"Origin": "http://127.0.0.1:8000"}, false},
		{"DELETE", "/api/streams/live/x", nil, false}, // curl
	} {
		w := do(h, c.method, c.path, c.header)
		if got := w.Code == http.StatusForbidden; got != c.forbidden {
			t.Errorf("%s %s with %v = %d %s; want forbidden %v", c.method, c.path, c.header, w.Code, w.Body, c.forbidden)
		}
	}
	named := newTestHandler(t, func(c *config) { c.APIAllowOrigin = "https://evil.example" })
	if w := do(named, "DELETE", "/api/streams/live/x", evil); w.Code != http.StatusNotFound {
		t.Errorf("DELETE from a site -api-allow-origin names = %d; want 404 (nothing to kick)", w.Code)
	}
}

// TestAdminPageCannotBeFramed: the admin page forbids framing and runs
// only its own inline script and style, and a request head over 16 KiB
// gets 431 as the README says.
func TestAdminPageCannotBeFramed(t *testing.T) {
	h := newTestHandler(t, nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/admin/", nil))
	csp := w.Header().Get("Content-Security-Policy")
	if w.Header().Get("X-Frame-Options") != "DENY" || !strings.Contains(csp, "frame-ancestors 'none'") ||
		!strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("admin headers: X-Frame-Options %q, CSP %q", w.Header().Get("X-Frame-Options"), csp)
	}
	if n := strings.Count(csp, "'sha256-"); n != 2 {
		t.Errorf("CSP has %d hashes; want one for the page's script and one for its style", n)
	}

	ts := startServer(t, nil)
	for _, tc := range []struct {
		pad  int
		want int
	}{{15 << 10, 200}, {16 << 10, 431}} {
		req, _ := http.NewRequest("GET", "http://"+ts.httpAddr+"/api/server", nil)
		req.Header.Set("X-Pad", strings.Repeat("a", tc.pad))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("a %d-byte header: %d; want %d", tc.pad, resp.StatusCode, tc.want)
		}
	}
}

// TestRedactQuery: credentials are hidden however they are spelt, other
// parameters are kept as they came.
func TestRedactQuery(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"a=1&b=2", "a=1&b=2"},
		{"sign=1796431621-0123456789abcdef0123456789abcdef", "sign=1796431621-***"},
		{"sign=nodash", "sign=***"},
		{"sign=-abc", "sign=***"},
		{"sign=12x-abc", "sign=***"},
		{"k=v&SIGN=1-abc&token=t&Key=k&pass=p", "k=v&SIGN=1-***&token=***&Key=***&pass=***"},
		{"%73ign=1-abc", "%73ign=1-***"},
		{"a=1;token=t", "a=1;token=***"},
		{"sign", "sign"},
		{"sign=1-abc&sign=2-def", "sign=1-***&sign=2-***"},
		{"monkey=1", "monkey=1"},
	} {
		if got := redactQuery(tc.in); got != tc.want {
			t.Errorf("redactQuery(%q) = %q; want %q", tc.in, got, tc.want)
		}
	}
}

// TestCheckSign checks the NMS signed-URL scheme, ?sign=EXPIRES-HASH with
// HASH = lowercase hex md5("/APP/NAME-EXPIRES-SECRET"), case by case. The
// hashes are computed here from that formula, not by checkSign.
func TestCheckSign(t *testing.T) {
	const secret = "s3cret"
	now := time.Unix(1_700_000_000, 0)
	key := streamKey{"live", "x"}
	// hash is the formula itself, over the path and expiry text as given.
	hash := func(path, expires, secret string) string {
		sum := md5.Sum([]byte(path + "-" + expires + "-" + secret))
		return hex.EncodeToString(sum[:])
	}
	exp := strconv.FormatInt(now.Unix()+60, 10)
	good := exp + "-" + hash("/live/x", exp, secret) // valid for another minute
	offByOne := good[:len(good)-1] + "0"             // good with its last hex digit changed
	if strings.HasSuffix(good, "0") {
		offByOne = good[:len(good)-1] + "1"
	}
	at := func(unix int64) string { // a valid signature expiring at unix
		e := strconv.FormatInt(unix, 10)
		return e + "-" + hash("/live/x", e, secret)
	}
	for _, tc := range []struct {
		name   string
		key    streamKey
		query  string
		secret string
		now    time.Time
		want   error // nil: accepted
	}{
		{"valid", key, "sign=" + good, secret, now, nil},
		{"valid, expiring in a second", key, "sign=" + at(now.Unix()+1), secret, now, nil},
		// The boundary: expired means EXPIRES < now in whole seconds, so a
		// signature is still good during the second it expires in. NMS
		// (v2 and v4 verifyAuth: exp < (Date.now()/1000|0)) does the same.
		{"expiring this very second", key, "sign=" + at(now.Unix()), secret, now, nil},
		{"expiring this second, late in it", key, "sign=" + at(now.Unix()), secret, now.Add(999 * time.Millisecond), nil},
		{"expired a second ago", key, "sign=" + at(now.Unix()-1), secret, now, errSignExpired},
		{"expired long ago", key, "sign=" + at(1), secret, now, errSignExpired},
		{"valid, now past its expiry", key, "sign=" + good, secret, now.Add(61 * time.Second), errSignExpired},
		// The hash is checked first: an expired signature with a wrong hash
		// is invalid, not expired.
		{"expired and wrong hash", key, "sign=1-" + hash("/live/x", "2", secret), secret, now, errSignInvalid},

		{"wrong secret", key, "sign=" + exp + "-" + hash("/live/x", exp, "other"), secret, now, errSignInvalid},
		{"hash of another expiry", key, "sign=" + exp + "-" + hash("/live/x", "1", secret), secret, now, errSignInvalid},
		{"hash for another app", key, "sign=" + exp + "-" + hash("/other/x", exp, secret), secret, now, errSignInvalid},
		{"hash for another name", key, "sign=" + exp + "-" + hash("/live/y", exp, secret), secret, now, errSignInvalid},
		{"signed for live/x, used on other/x", streamKey{"other", "x"}, "sign=" + good, secret, now, errSignInvalid},
		{"signed for live/x, used on live/y", streamKey{"live", "y"}, "sign=" + good, secret, now, errSignInvalid},
		{"hash of the path without its slash", key, "sign=" + exp + "-" + hash("live/x", exp, secret), secret, now, errSignInvalid},
		{"hash of the path with .flv", key, "sign=" + exp + "-" + hash("/live/x.flv", exp, secret), secret, now, errSignInvalid},
		{"hash one digit off", key, "sign=" + offByOne, secret, now, errSignInvalid},
		{"hash cut short", key, "sign=" + good[:len(good)-1], secret, now, errSignInvalid},
		{"hash with a byte more", key, "sign=" + good + "0", secret, now, errSignInvalid},
		// Hex is compared as text: uppercase is refused (NMS compares with
		// === against Node's lowercase digest, so refuses it too).
		{"uppercase hex", key, "sign=" + exp + "-" + strings.ToUpper(hash("/live/x", exp, secret)), secret, now, errSignInvalid},

		{"no query", key, "", secret, now, errSignMissing},
		{"no sign among other params", key, "token=1&k=v", secret, now, errSignMissing},
		{"empty sign", key, "sign=", secret, now, errSignMissing},
		{"sign without =", key, "sign", secret, now, errSignMissing},
		{"other case: Sign", key, "Sign=" + good, secret, now, errSignMissing},

		{"no dash", key, "sign=" + exp + hash("/live/x", exp, secret), secret, now, errSignInvalid},
		{"expiry only", key, "sign=" + exp, secret, now, errSignInvalid},
		{"empty hash", key, "sign=" + exp + "-", secret, now, errSignInvalid},
		{"empty expiry", key, "sign=-" + hash("/live/x", "", secret), secret, now, errSignInvalid},
		// The hash matches the formula over the text "soon", so only the
		// expiry's parsing can refuse it.
		{"non-numeric expiry", key, "sign=soon-" + hash("/live/x", "soon", secret), secret, now, errSignInvalid},
		{"expiry with trailing junk", key, "sign=" + exp + "s-" + hash("/live/x", exp+"s", secret), secret, now, errSignInvalid},
		{"expiry past int64", key, "sign=99999999999999999999-" + hash("/live/x", "99999999999999999999", secret), secret, now, errSignInvalid},
		{"negative expiry", key, "sign=-5-" + hash("/live/x", "-5", secret), secret, now, errSignInvalid},
		// Everything after the first dash is the hash. (NMS takes only the
		// part between the first and second dash, so it would accept this.)
		{"a third dash-separated part", key, "sign=" + good + "-extra", secret, now, errSignInvalid},
		// The hash covers the expiry as sent: a leading zero is kept in it.
		// (NMS hashes parseInt(expiry) instead, so it would refuse this and
		// accept "0"+exp with the hash of exp, which this code refuses.)
		{"leading zero, hashed as sent", key, "sign=0" + exp + "-" + hash("/live/x", "0"+exp, secret), secret, now, nil},
		{"leading zero, hashed without it", key, "sign=0" + exp + "-" + hash("/live/x", exp, secret), secret, now, errSignInvalid},

		// The first sign parameter is the one checked.
		{"duplicate sign, valid first", key, "sign=" + good + "&sign=garbage", secret, now, nil},
		{"duplicate sign, valid second", key, "sign=garbage&sign=" + good, secret, now, errSignInvalid},
		{"duplicate sign, empty first", key, "sign=&sign=" + good, secret, now, errSignMissing},
		{"duplicate sign, expired first", key, "sign=" + at(now.Unix()-1) + "&sign=" + good, secret, now, errSignExpired},

		{"sign first of other params", key, "sign=" + good + "&token=1", secret, now, nil},
		{"sign last of other params", key, "a=1&b=2&sign=" + good, secret, now, nil},
		{"sign among other params", key, "a=1&sign=" + good + "&b=2", secret, now, nil},
		{"sign among empty params", key, "&&sign=" + good + "&", secret, now, nil},

		// The query is URL-decoded before the check.
		{"escaped dash", key, "sign=" + exp + "%2D" + hash("/live/x", exp, secret), secret, now, nil},
		{"escaped parameter name", key, "%73ign=" + good, secret, now, nil},
		{"every byte escaped", key, "sign=" + escapeAll(good), secret, now, nil},
		{"hash percent-encoded byte by byte", key, "sign=" + exp + "-" + escapeAll(hash("/live/x", exp, secret)), secret, now, nil},
		{"plus decodes to a space", key, "sign=" + exp + "+-" + hash("/live/x", exp+" ", secret), secret, now, errSignInvalid},
		// A pair that does not decode is dropped, so the sign is missing.
		{"bad escape in the sign", key, "sign=" + good + "%zz", secret, now, errSignMissing},
		{"semicolon in the sign pair", key, "sign=" + good + ";a=1", secret, now, errSignMissing},
		{"bad escape in another param", key, "a=%zz&sign=" + good, secret, now, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkSign(tc.key, tc.query, tc.secret, tc.now)
			if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("checkSign(%v, %q, %q, %d) = %v; want %v", tc.key, tc.query, tc.secret, tc.now.Unix(), err, tc.want)
			}
		})
	}
}

// escapeAll percent-encodes every byte of s, with uppercase hex digits.
func escapeAll(s string) string {
	var b strings.Builder
	for i := range len(s) {
		fmt.Fprintf(&b, "%%%02X", s[i])
	}
	return b.String()
}

// TestHookRedirectsNotFollowed is the attack of a publish or play hook
// that answers with a redirect: to a second server that admits anyone
// (Go's client turned a 302 into a GET there, whose 200 admitted the
// client), with a 307 or 308 (which re-POSTed the body, the client's IP
// and signed query, to the new target), or to itself (followed ten
// times). A 3xx is a refusal; the hook gets one request, the target none.
func TestHookRedirectsNotFollowed(t *testing.T) {
	for _, tc := range []struct {
		name   string
		status int
		toSelf bool // a redirect loop
	}{
		{"301 elsewhere", http.StatusMovedPermanently, false},
		{"302 elsewhere", http.StatusFound, false},
		{"303 elsewhere", http.StatusSeeOther, false},
		{"307 elsewhere", http.StatusTemporaryRedirect, false},
		{"308 elsewhere", http.StatusPermanentRedirect, false},
		{"302 loop", http.StatusFound, true},
		{"307 loop", http.StatusTemporaryRedirect, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var hookGot, targetGot []string // "METHOD /path" of each request
			target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				targetGot = append(targetGot, r.Method+" "+r.URL.Path)
				mu.Unlock()
			}))
			defer target.Close()
			var hook *httptest.Server
			hook = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				hookGot = append(hookGot, r.Method+" "+r.URL.Path)
				mu.Unlock()
				to := target.URL + "/admit"
				if tc.toSelf {
					to = hook.URL + r.URL.Path
				}
				http.Redirect(w, r, to, tc.status)
			}))
			defer hook.Close()
			ts := startServer(t, func(c *config) { c.OnPublish, c.OnPlay = hook.URL+"/publish", hook.URL+"/play" })

			pub := dialRTMP(t, ts.rtmpAddr, false)
			pub.connect("live")
			pub.command(pub.createStream(), "publish", nil, "redir", "live")
			if code := pub.expectStatus(); code != "NetStream.Publish.Unauthorized" {
				t.Errorf("publish: %s; want NetStream.Publish.Unauthorized", code)
			}
			// GET, not HEAD, which asks no hook; an admitted player's
			// answer comes at once too, its body never read.
			client := &http.Client{Timeout: 10 * time.Second}
			resp, err := client.Get(ts.httpURL("redir"))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("HTTP-FLV play: %d; want 403", resp.StatusCode)
			}

			mu.Lock()
			defer mu.Unlock()
			if want := "POST /publish, POST /play"; strings.Join(hookGot, ", ") != want {
				t.Errorf("hook got %q; want %s, one request each", hookGot, want)
			}
			if len(targetGot) != 0 {
				t.Errorf("redirect target got %q; want no request", targetGot)
			}
			if logs := ts.logs.String(); !strings.Contains(logs, "redirect") {
				t.Errorf("no log line names the redirect:\n%s", logs)
			}
		})
	}
}

// TestHookErrorsHideSecrets is the attack of reading a hook's credentials
// from what the server says about it. The hook URLs carry a user, a
// password and a token; a refusal (403) and a hook that is down (the
// client's url.Error) must show neither, in the server's log or in what
// the refused client is told. The hook itself still gets them.
func TestHookErrorsHideSecrets(t *testing.T) {
	const user, pass, token = "hookuser", "hunter2pass", "token=T0K3N"
	var mu sync.Mutex
	var auth []string // user:pass?query as the hook saw them
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, _ := r.BasicAuth()
		mu.Lock()
		auth = append(auth, u+":"+p+"?"+r.URL.RawQuery)
		mu.Unlock()
		http.Error(w, "no", http.StatusForbidden)
	}))
	defer hook.Close()
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downAddr := down.Addr().String()
	down.Close() // nothing listens there now: connection refused

	for _, tc := range []struct{ name, addr, shown string }{
		{"hook answers 403", strings.TrimPrefix(hook.URL, "http://"), hook.URL + "/deny"},
		{"hook is down", downAddr, "http://" + downAddr + "/deny"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hookURL := "http://" + user + ":" + pass + "@" + tc.addr + "/deny?" + token
			ts := startServer(t, func(c *config) { c.OnPublish, c.OnPlay = hookURL, hookURL })
			stopTS := startServer(t, func(c *config) { c.OnStop = hookURL })
			secret := func(what, s string) {
				t.Helper()
				var shown []string
				for _, bad := range []string{user, pass, token} {
					if strings.Contains(s, bad) {
						shown = append(shown, bad)
					}
				}
				if shown != nil {
					t.Errorf("%s shows %q:\n%s", what, shown, s)
				}
			}
			pub := dialRTMP(t, ts.rtmpAddr, false)
			pub.connect("live")
			pub.command(pub.createStream(), "publish", nil, "secret", "live")
			status := pub.expectCommand("onStatus")
			secret("the RTMP publisher's onStatus", fmt.Sprint(status.Args))
			resp, body, err := httpGetFLV(context.Background(), ts.httpURL("secret"))
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("HTTP-FLV play: %d; want 403", resp.StatusCode)
			}
			secret("the HTTP-FLV player's 403 body", string(body))
			waitFor(t, "both refusals in the log", func() bool {
				logs := ts.logs.String()
				return strings.Contains(logs, "publish refused") && strings.Contains(logs, "play refused")
			})
			secret("the server log", ts.logs.String())
			if logs := ts.logs.String(); strings.Count(logs, tc.shown) < 2 {
				t.Errorf("the refusals do not name the hook as %s:\n%s", tc.shown, logs)
			}

			// The stop hook fails after the player has gone; only the log
			// hears of it.
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, "GET", stopTS.httpURL("secret"), nil)
			resp, err = http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			waitFor(t, "the player", func() bool { return stopTS.viewers(streamKey{"live", "secret"}) == 1 })
			cancel()
			resp.Body.Close()
			waitFor(t, "the failed stop hook in the log", func() bool {
				return strings.Contains(stopTS.logs.String(), `msg="hook failed"`)
			})
			secret("the server log", stopTS.logs.String())
			if logs := stopTS.logs.String(); !strings.Contains(logs, tc.shown) {
				t.Errorf("the failed stop hook is not named as %s:\n%s", tc.shown, logs)
			}
		})
	}
	mu.Lock()
	defer mu.Unlock()
	want := user + ":" + pass + "?" + token
	if len(auth) != 3 || auth[0] != want || auth[1] != want || auth[2] != want {
		t.Errorf("the hook got credentials %q; want %q three times (publish, play, stop)", auth, want)
	}
}

// TestHookDropsCounted is the attack of a stop hook that answers slowly
// while players come and go: the hooks' event queue (256) fills and
// events are lost. They were lost silently; now each lost stop event is
// counted in /metrics, the count is logged (one line per 10 s at most),
// and posted + lost adds up to every player that left.
func TestHookDropsCounted(t *testing.T) {
	const cycles = 300
	gate := make(chan struct{}) // the hook answers once it closes
	var mu sync.Mutex
	stops := 0
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		stops++
		mu.Unlock()
		select {
		case <-gate:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(hook.Close) // cleanups run last first: open the gate, stop gms, then this
	ts := startServer(t, func(c *config) { c.OnStop, c.HookTimeout = hook.URL+"/stop", time.Minute })
	release := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(release)

	start := time.Now()
	for i := range cycles {
		nc, err := net.Dial("tcp", ts.httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(nc, "GET /live/slowstop.flv HTTP/1.1\r\nHost: %s\r\n\r\n", ts.httpAddr)
		resp, err := http.ReadResponse(bufio.NewReader(nc), nil)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("play %d: %v %v", i, resp, err)
		}
		nc.Close()
	}
	c := &ts.hub.counters
	waitFor(t, "every player to have left", func() bool {
		return c.accepted[protoHTTP].Load() == cycles && c.active[protoHTTP].Load() == 0
	})
	elapsed := time.Since(start)

	lost := metricValue(t, ts, "gms_hook_dropped_total")
	if lost <= 0 {
		t.Fatalf("gms_hook_dropped_total = %v after %d players left past a stuck stop hook; want > 0", lost, cycles)
	}
	logs := ts.logs.String()
	lines := strings.Count(logs, `msg="hook events dropped`)
	if lines == 0 || !strings.Contains(logs, "dropped_total=") {
		t.Errorf("no log line about the lost hook events:\n%s", logs)
	}
	const every = 10 * time.Second // at most one line per 10 s, as dropLogEvery says
	if limit := 1 + int(elapsed/every); lines > limit {
		t.Errorf("%d log lines about lost hook events in %v; want at most %d, one per %v", lines, elapsed, limit, every)
	}

	// Once the hook answers, the queued events reach it: none went
	// missing without being counted.
	release()
	waitFor(t, "the queued stop events to be posted", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return stops+int(lost) >= cycles
	})
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d players left: %d stop events posted, %v lost", cycles, stops, lost)
	if stops+int(lost) != cycles {
		t.Errorf("stop hook got %d posts, %v lost; want %d in all", stops, lost, cycles)
	}
}

// metricValue scrapes one unlabelled metric from /metrics; 0 if absent.
func metricValue(t *testing.T, ts *testServer, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + ts.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", sc.Text(), err)
			}
			return f
		}
	}
	return 0
}

// TestShutdownBoundedBySlowHook: a stop hook that never answers does not
// hold up shutdown for every queued event (at the hook timeout each, 40
// events would take 20 s): what is still queued after one hook timeout is
// lost, counted and logged.
func TestShutdownBoundedBySlowHook(t *testing.T) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // then net/http notices the client hang up
		<-r.Context().Done()
	}))
	defer hook.Close()
	ts := startServer(t, func(c *config) { c.OnStop, c.HookTimeout = hook.URL+"/stop", 500*time.Millisecond })
	const cycles = 40
	for i := range cycles {
		resp, _, _ := httpGetFLVFor("http://"+ts.httpAddr+"/live/gone.flv", 20*time.Millisecond)
		if resp == nil || resp.StatusCode != 200 {
			t.Fatalf("play %d: %v", i, resp)
		}
	}
	c := &ts.hub.counters
	waitFor(t, "every player to have left", func() bool { return c.active[protoHTTP].Load() == 0 })
	if err := ts.stop(); err != nil {
		t.Fatalf("shutdown with a stuck stop hook: %v", err)
	}
	if lost := c.hookDropped.Load(); lost < cycles/2 {
		t.Errorf("%d of %d stop events counted lost at shutdown; want most of them", lost, cycles)
	}
	if !strings.Contains(ts.logs.String(), `msg="hook events dropped`) {
		t.Errorf("no log line about the events lost at shutdown")
	}
}

// TestProxiedRequestsAreNotLocal: a request that came through a proxy
// (one that says so: Forwarded, X-Forwarded-For, X-Real-IP, Via) is not
// "this machine" however local its connection: behind a reverse proxy on
// the same machine, as README's nginx set-up, anyone could otherwise kick
// or start relays with no -api-user, and play with no sign under
// -auth-trust-loopback.
func TestProxiedRequestsAreNotLocal(t *testing.T) {
	do := func(h http.Handler, method, path, header string) int {
		r := httptest.NewRequest(method, path, nil)
		r.RemoteAddr = "127.0.0.1:4000"
		if header != "" {
			r.Header.Set(header, "203.0.113.9")
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Code
	}
	h := newTestHandler(t, func(c *config) { c.PlayAuth, c.Secret, c.TrustLoopback = true, "s", true })
	if code := do(h, "DELETE", "/api/clients/ABCDEFGH", ""); code != 404 {
		t.Errorf("DELETE from this machine = %d; want 404 (nothing to kick)", code)
	}
	if code := do(h, "GET", "/live/x/index.m3u8", ""); code != 404 {
		t.Errorf("unsigned playlist from this machine with -auth-trust-loopback = %d; want 404 (not live)", code)
	}
	for _, header := range []string{"Forwarded", "X-Forwarded-For", "X-Real-IP", "Via"} {
		if code := do(h, "DELETE", "/api/clients/ABCDEFGH", header); code != 403 {
			t.Errorf("DELETE through a proxy (%s) = %d; want 403", header, code)
		}
		if code := do(h, "POST", "/api/relay/pull", header); code != 403 {
			t.Errorf("POST /api/relay/pull through a proxy (%s) = %d; want 403", header, code)
		}
		if code := do(h, "GET", "/live/x/index.m3u8", header); code != 403 {
			t.Errorf("unsigned playlist through a proxy (%s) with -auth-trust-loopback = %d; want 403", header, code)
		}
		if code := do(h, "GET", "/live/x.flv", header); code != 403 {
			t.Errorf("unsigned HTTP-FLV through a proxy (%s) with -auth-trust-loopback = %d; want 403", header, code)
		}
	}
}

// TestRelayAPIAcrossOrigins: a page of an origin -api-allow-origin names
// may start relays with a JSON POST, which a browser sends only after a
// preflight that allows POST; a wildcard origin may not.
func TestRelayAPIAcrossOrigins(t *testing.T) {
	preflight := func(h http.Handler, origin string) (allowOrigin, allowMethods string) {
		r := httptest.NewRequest("OPTIONS", "/api/relay/pull", nil)
		r.Header.Set("Origin", origin)
		r.Header.Set("Access-Control-Request-Method", "POST")
		r.Header.Set("Access-Control-Request-Headers", "content-type")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w.Header().Get("Access-Control-Allow-Origin"), w.Header().Get("Access-Control-Allow-Methods")
	}
	named := newTestHandler(t, func(c *config) { c.APIAllowOrigin = "https://ops.example" })
	if o, m := preflight(named, "https://ops.example"); o != "https://ops.example" || !strings.Contains(m, "POST") {
		t.Errorf("named origin's POST preflight: origin %q, methods %q; want POST allowed", o, m)
	}
	wild := newTestHandler(t, func(c *config) { c.APIAllowOrigin = "*" })
	if o, m := preflight(wild, "https://evil.example"); strings.Contains(m, "POST") {
		t.Errorf("wildcard POST preflight: origin %q, methods %q; want no POST", o, m)
	}
}

// TestHEADAsksNoHook: a HEAD request (a monitoring probe, a player
// checking a URL) is no play: it is answered after the sign check without
// asking -on-play, which would count a viewer that never comes and never
// gets a stop.
func TestHEADAsksNoHook(t *testing.T) {
	var calls atomic.Int64
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { calls.Add(1) }))
	defer hook.Close()
	const secret = "head-secret"
	ts := startServer(t, func(c *config) { c.OnPlay, c.PlayAuth, c.Secret = hook.URL, true, secret })
	key := streamKey{"live", "probed"}
	q := sign(key, time.Now().Add(time.Hour).Unix(), secret)
	for _, path := range []string{"/live/probed.flv", "/live/probed/index.m3u8"} {
		url := "http://" + ts.httpAddr + path
		resp, err := http.Head(url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Errorf("HEAD %s unsigned: %d; want 403", path, resp.StatusCode)
		}
		if resp, err = http.Head(url + "?" + q); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == 403 {
			t.Errorf("HEAD %s signed: 403", path)
		}
	}
	if n := calls.Load(); n != 0 {
		t.Errorf("%d -on-play calls for HEAD requests; want none", n)
	}
}
