package main

// The JSON API, Prometheus /metrics and the SSE event stream, against a
// live server.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"strconv"
	"strings"
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

type apiStreamsReply map[string]map[string]struct {
	Publisher *struct {
		App, Stream, ClientID, IP, Protocol, Query string
		Bytes                                      uint64
		BitrateIn, BitrateIn30                     float64
		Video                                      *videoParams
		Audio                                      *audioParams
		Tracks                                     []trackParams
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
	if p.App != "live" || p.Stream != "api" || len(p.ClientID) != 8 || p.IP != "127.0.0.1" || p.Protocol != "rtmp" || p.Query != "sign=***&k=v" {
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
	if want := map[string]int{"rtmp": 1, "http": 1, "ws": 1, "hls": 0}; fmt.Sprint(s.Viewers) != fmt.Sprint(want) {
		t.Errorf("viewers = %v; want %v", s.Viewers, want)
	}
	var one map[string]any
	getJSON(t, "GET", base+"/api/streams/live/api", &one)
	if one["isLive"] != true || one["viewers"] != 3.0 || one["duration"].(float64) < 3 {
		t.Errorf("/api/streams/live/api = %v", one)
	}
	if args, _ := one["arguments"].(map[string]any); args["k"] != "v" || args["sign"] != "***" {
		t.Errorf("arguments = %v; want the publish query, its sign hidden", one["arguments"])
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

// TestMetrics scrapes /metrics during a publish with a viewer and parses
// every line of the text format.
func TestMetrics(t *testing.T) {
	// CPU time counts in ticks of 10 ms: a run of this test alone may not
	// have used one yet, so spend one.
	for start := time.Now(); processCPUSeconds() == 0 && time.Since(start) < 5*time.Second; {
	}
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
		return n == 2 // the hooks' notifier and this stream
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
