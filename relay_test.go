package main

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// TestRelayRules reads the forms a relay URL takes (flags and NMS's
// tasks) and where each stream goes.
func TestRelayRules(t *testing.T) {
	key := streamKey{"live", "cam"}
	for _, c := range []struct {
		app, url, want string
	}{
		{"", "rtmp://b/live", "rtmp://b/live/cam"},
		{"", "rtmp://b:1936/live/", "rtmp://b:1936/live/cam"},
		{"", "rtmp://a.rtmp.youtube.com/live2/KEY", "rtmp://a.rtmp.youtube.com/live2/KEY"},
		{"live", "rtmps://b/app?token=x", "rtmps://b/app/cam?token=x"},
	} {
		r, err := pushRule(c.app, c.url)
		if err != nil {
			t.Errorf("pushRule(%q): %v", c.url, err)
			continue
		}
		if got := r.target(key); got != c.want {
			t.Errorf("push %q: stream goes to %q; want %q", c.url, got, c.want)
		}
	}
	for _, bad := range []string{"http://b/live", "rtmp:///live", "rtmp://b", "not a url\x7f"} {
		if _, err := pushRule("", bad); err == nil {
			t.Errorf("pushRule(%q) accepted", bad)
		}
	}
	origin := relayRule{Mode: relayPull, URL: "rtmp://o:1935", AppendName: true, Origin: true}
	if got := origin.target(key); got != "rtmp://o:1935/live/cam" {
		t.Errorf("origin target %q", got)
	}

	f := false
	for _, c := range []struct {
		task relayTaskConfig
		err  string
		want string
	}{
		{relayTaskConfig{App: "live", Mode: "push", Edge: "rtmp://b/live"}, "", "rtmp://b/live/cam"},
		{relayTaskConfig{App: "live", Mode: "push", Edge: "rtmp://b/x/y", AppendName: &f}, "", "rtmp://b/x/y"},
		{relayTaskConfig{App: "live", Mode: "pull", Edge: "rtmp://o/live"}, "", "rtmp://o/live/cam"},
		{relayTaskConfig{App: "live", Mode: "static", Edge: "rtmp://o/live/src", Name: "cam"}, "", "rtmp://o/live/src"},
		{relayTaskConfig{App: "live", Mode: "static", Edge: "rtmp://o/live/src"}, "name", ""},
		{relayTaskConfig{App: "live", Mode: "mirror", Edge: "rtmp://o/live"}, "mode", ""},
		{relayTaskConfig{App: "../x", Mode: "push", Edge: "rtmp://o/live"}, "app", ""},
		{relayTaskConfig{App: "live", Mode: "pull", Edge: "ftp://o/live"}, "edge", ""},
	} {
		r, err := c.task.rule()
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%+v: error %v; want one about %s", c.task, err, c.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%+v: %v", c.task, err)
			continue
		}
		if got := r.target(key); got != c.want {
			t.Errorf("%+v: target %q; want %q", c.task, got, c.want)
		}
	}
}

// TestRedactRelayURL hides what a relay URL may carry as credentials.
func TestRedactRelayURL(t *testing.T) {
	for _, c := range []struct {
		url    string
		masked bool
		want   string
	}{
		{"rtmp://user:pw@b/live/cam?sign=123-abc", false, "rtmp://b/live/cam?sign=123-***"},
		{"rtmp://a.rtmp.youtube.com/live2/xxxx-yyyy", true, "rtmp://a.rtmp.youtube.com/live2/***"},
		{"rtmp://b/live?token=t", false, "rtmp://b/live?token=***"},
	} {
		if got := redactRelayURL(c.url, c.masked); got != c.want {
			t.Errorf("redactRelayURL(%q) = %q; want %q", c.url, got, c.want)
		}
	}
}

// TestRedactErr hides a relay URL's secrets wherever an error quotes
// them, as servers do in their refusals.
func TestRedactErr(t *testing.T) {
	for _, c := range []struct {
		msg, url string
		masked   bool
		want     string
	}{
		{"rtmp: refused: server refused publish: NetStream.Publish.BadName (stream /ingest/sk_9f8e is already publishing)",
			"rtmp://b/ingest/sk_9f8e", true,
			"rtmp: refused: server refused publish: NetStream.Publish.BadName (stream /ingest/*** is already publishing)"},
		{"dial rtmp://b/ingest/sk_9f8e: refused", "rtmp://b/ingest/sk_9f8e", true, "dial rtmp://b/ingest/***: refused"},
		{"refused play of /live/cam?sign=1796-abcdef by bob:hunter2", "rtmp://bob:hunter2@b/live/cam?sign=1796-abcdef", false,
			"refused play of /live/cam?*** by ***:***"},
		{"stream /live/cam ended", "rtmp://b/live/cam", false, "stream /live/cam ended"},
	} {
		if got := redactErr(c.msg, c.url, c.masked); got != c.want {
			t.Errorf("redactErr(%q, %q) = %q; want %q", c.msg, c.url, got, c.want)
		}
	}
}

// TestSkipBehind: a push whose batch spans more than relayMaxLag of media
// (its target is slower than the stream) skips to the batch's last
// keyframe and keeps the headers; a batch within it goes whole.
func TestSkipBehind(t *testing.T) {
	mk := func(typ uint8, ms uint32, key bool, body ...byte) *frame {
		f := &frame{typ: typ, time: ms, key: key}
		f.flv = appendFLVTag(nil, typ, ms, body)
		return f
	}
	var batch []*frame
	batch = append(batch, mk(msgVideo, 0, true, 0x17, 0, 0, 0, 0)) // AVC sequence header
	batch = append(batch, mk(msgAudio, 0, false, 0xAF, 0, 0x12, 0x10))
	for ms := uint32(0); ms <= 6000; ms += 40 {
		key := ms%2000 == 0
		first := byte(0x27)
		if key {
			first = 0x17
		}
		batch = append(batch, mk(msgVideo, ms, key, first, 1, 0, 0, 0, 9))
		batch = append(batch, mk(msgAudio, ms, false, 0xAF, 1, 7))
	}
	got := skipBehind(slices.Clone(batch))
	if len(got) < 3 || got[0] != batch[0] || got[1] != batch[1] {
		t.Fatalf("the sequence headers did not stay first")
	}
	if got[2].time != 6000 || !got[2].key {
		t.Errorf("after the headers: a frame at %d (key %v); want the last keyframe, at 6000", got[2].time, got[2].key)
	}
	if n := len(got); n != 4 {
		t.Errorf("%d frames; want headers, keyframe and its audio", n)
	}
	short := batch[:2+2*50] // 2 s of media
	if got := skipBehind(slices.Clone(short)); len(got) != len(short) {
		t.Errorf("a 2 s batch lost %d frames", len(short)-len(got))
	}
}

// TestSignedPull signs an on-demand pull for the remote path, as checkSign
// checks it, and leaves URLs with a query, or no secret, alone.
func TestSignedPull(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	got := signedPull("rtmp://origin:1935/live/cam", "S3CRET", now)
	base, query, ok := strings.Cut(got, "?")
	if !ok || base != "rtmp://origin:1935/live/cam" {
		t.Fatalf("signedPull = %q", got)
	}
	if err := checkSign(streamKey{"live", "cam"}, query, "S3CRET", now); err != nil {
		t.Errorf("the origin refuses %q: %v", query, err)
	}
	for _, u := range []string{"rtmp://origin/live/cam?token=x"} {
		if got := signedPull(u, "S3CRET", now); got != u {
			t.Errorf("signedPull(%q) = %q; want it unchanged", u, got)
		}
	}
	if got := signedPull("rtmp://origin/live/cam", "", now); got != "rtmp://origin/live/cam" {
		t.Errorf("without a secret: %q", got)
	}
}
