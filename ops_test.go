package main

// Running gms for real: the JSON log format, the HTTP access log and
// configuration from the environment.

import (
	"context"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"
)

// jsonLogLines parses a JSON log, one object a line.
func jsonLogLines(t *testing.T, log string) []map[string]any {
	t.Helper()
	var lines []map[string]any
	for line := range strings.Lines(log) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line is not a JSON object: %v\n%s", err, line)
		}
		lines = append(lines, m)
	}
	return lines
}

// TestLogFormatJSON runs the server as main does, with -log-format json:
// every line is one JSON object with time, level and msg, and an RTMP
// publisher's connect and publish lines carry their attributes as keys.
func TestLogFormatJSON(t *testing.T) {
	logs := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-log-format", "json", "-rtmp", "127.0.0.1:0", "-http", "127.0.0.1:0"}, logs)
	}()
	var rtmpAddr string
	waitFor(t, "the listening line", func() bool {
		for _, m := range jsonLogLines(t, logs.String()) {
			if m["msg"] == "gms listening" {
				rtmpAddr, _ = m["rtmp"].(string)
				return true
			}
		}
		return false
	})
	pub := dialRTMP(t, rtmpAddr, false)
	pub.connect("live")
	sid := pub.createStream()
	pub.command(sid, "publish", nil, "s1?sign=SECRET", "live")
	if code := pub.expectStatus(); code != "NetStream.Publish.Start" {
		t.Fatalf("publish status %q", code)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return in 10 s")
	}

	want := map[string][]string{
		"connect": {"conn", "proto", "remote"},
		"publish": {"conn", "proto", "remote", "app", "stream", "query"},
		"close":   {"conn", "proto", "remote", "reason", "bytes_in", "duration"},
	}
	lines := jsonLogLines(t, logs.String())
	for _, m := range lines {
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := m[k].(string); !ok {
				t.Errorf("line without string %q: %v", k, m)
			}
		}
		if ts, _ := m["time"].(string); ts != "" {
			if _, err := time.Parse(time.RFC3339Nano, ts); err != nil {
				t.Errorf("time %q: %v", ts, err)
			}
		}
		msg, _ := m["msg"].(string)
		keys, ok := want[msg]
		if !ok {
			continue
		}
		delete(want, msg)
		for _, k := range keys {
			if _, ok := m[k]; !ok {
				t.Errorf("%q line without %q: %v", msg, k, m)
			}
		}
		if msg == "publish" && (m["app"] != "live" || m["stream"] != "s1" || m["query"] != "sign=***") {
			t.Errorf("publish line = %v; want app live, stream s1, query sign=***", m)
		}
	}
	for msg := range want {
		t.Errorf("no %q line in the log:\n%s", msg, logs.String())
	}
	if len(lines) < 5 {
		t.Errorf("%d log lines; want the start-up, connect, publish, shutdown and close lines", len(lines))
	}
}

// TestLogFormatFlag: -log-format takes text or json and nothing else.
func TestLogFormatFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want logFormat
	}{
		{nil, "text"},
		{[]string{"-log-format", "text"}, "text"},
		{[]string{"-log-format", "json"}, "json"},
	} {
		cfg, err := parseFlags(tc.args, io.Discard, func(string, ...any) {})
		if err != nil || cfg.LogFormat != tc.want {
			t.Errorf("parseFlags(%q) = %q, %v; want %q", tc.args, cfg.LogFormat, err, tc.want)
		}
	}
	for _, bad := range []string{"xml", "JSON", ""} {
		_, err := parseFlags([]string{"-log-format", bad}, io.Discard, func(string, ...any) {})
		if err == nil || !strings.Contains(err.Error(), "-log-format") {
			t.Errorf("-log-format %q: error %v; want one naming -log-format", bad, err)
		}
	}
}
