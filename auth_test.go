package main

// Admission: signed URLs, hooks and HTTP Basic auth, against a live server.

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
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
