package main

import (
	"strings"
	"testing"
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
