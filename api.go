package main

// The JSON API (NMS v2's routes and shapes, plus more keys), lifecycle
// events as Server-Sent Events, Prometheus metrics, and the process and
// system figures they report (Linux /proc; zero elsewhere).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// apiRoutes adds the JSON API (NMS v2's routes and shapes, plus more keys)
// and /metrics.
func (s *httpServer) apiRoutes(mux *http.ServeMux) {
	if !s.cfg.API {
		return
	}
	mux.HandleFunc("GET /api/streams", s.guard(s.apiStreams))
	mux.HandleFunc("GET /api/streams/{app}/{name}", s.guard(s.apiStream))
	mux.HandleFunc("DELETE /api/streams/{app}/{name}", s.control(s.apiKickStream))
	mux.HandleFunc("DELETE /api/clients/{id}", s.control(s.apiKickClient))
	mux.HandleFunc("GET /api/server", s.guard(s.apiServer))
	mux.HandleFunc("GET /api/events", s.guard(s.apiEvents))
	mux.HandleFunc("GET /api/recordings", s.guard(s.apiRecordings))
	mux.HandleFunc("GET /api/relay", s.guard(s.apiRelays))
	mux.HandleFunc("POST /api/relay/pull", s.control(s.apiAddRelay(relayPull)))
	mux.HandleFunc("POST /api/relay/push", s.control(s.apiAddRelay(relayPush)))
	mux.HandleFunc("DELETE /api/relay/{id}", s.control(s.apiDeleteRelay))
	mux.HandleFunc("GET /metrics", s.guard(s.metrics))
}

// apiRecordings lists the recordings on disk, newest first (at most
// 1000), with size and duration; 404 without -record.
func (s *httpServer) apiRecordings(w http.ResponseWriter, r *http.Request) {
	if s.rec == nil {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "recording is off (start gms with -record DIR)"})
		return
	}
	list, err := s.rec.list(1000)
	if err != nil {
		s.log.Warn("api: listing recordings", "err", err)
	}
	if list == nil {
		list = []recordingInfo{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"recordings": list, "errors": s.rec.errors.Load()})
}

// health answers load balancers and orchestrators: 200 while gms takes
// new clients, 503 while it drains. It needs no credentials and tells
// nothing but that.
func (s *httpServer) health(w http.ResponseWriter, r *http.Request) {
	if s.admit.draining.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "draining"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// apiClient is one publisher or subscriber in NMS's shape, plus
// protocol, drops and queue depth.
func apiClient(key streamKey, c clientSnapshot) map[string]any {
	return map[string]any{
		"app": key.App, "stream": key.Name, "clientId": c.ID, "connectCreated": isoTime(c.Created),
		"bytes": c.Bytes, "ip": c.IP, "protocol": c.Protocol,
		"drops": c.Drops, "queue": c.Queue, "queueBytes": c.QueueBytes,
	}
}

// apiStreams answers GET /api/streams in NMS v2's shape:
// {"APP":{"NAME":{"publisher":{...}|null,"subscribers":[...]}}}.
func (s *httpServer) apiStreams(w http.ResponseWriter, r *http.Request) {
	out := map[string]map[string]any{}
	for _, st := range s.hub.snapshot() {
		if out[st.Key.App] == nil {
			out[st.Key.App] = map[string]any{}
		}
		var pub any
		if p := st.Publisher; p != nil {
			m := apiClient(st.Key, *p)
			delete(m, "drops")
			delete(m, "queue")
			delete(m, "queueBytes")
			m["audio"], m["video"] = st.Audio, st.Video
			if st.Audio == nil {
				m["audio"] = nil
			}
			if st.Video == nil {
				m["video"] = nil
			}
			m["query"] = redactQuery(p.Query)
			m["uptime"] = math.Round(time.Since(st.Started).Seconds()*10) / 10
			m["bitrateIn"], m["bitrateIn30"] = st.BitrateIn, st.BitrateIn30
			m["framesIn"] = st.FramesIn
			if len(st.Tracks) > 0 {
				m["tracks"] = st.Tracks
			}
			pub = m
		}
		subs := []any{}
		viewers := map[protocol]int{protoRTMP: 0, protoHTTP: 0, protoWS: 0}
		for _, c := range st.Subscribers {
			if c.Protocol == protoHLS {
				continue // the HLS muxer; HLS viewers are counted by the muxer
			}
			subs = append(subs, apiClient(st.Key, c))
			viewers[c.Protocol]++
		}
		viewers[protoHLS] = s.hls.viewers(st.Key)
		out[st.Key.App][st.Key.Name] = map[string]any{
			"publisher": pub, "subscribers": subs,
			"viewers": viewers, "bitrateOut": st.BitrateOut, "bitrateOut30": st.BitrateOut30,
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// apiStream answers GET /api/streams/APP/NAME like NMS v2:
// {"isLive","viewers","duration","bitrate","startTime","arguments"}.
func (s *httpServer) apiStream(w http.ResponseWriter, r *http.Request) {
	key := streamKey{r.PathValue("app"), r.PathValue("name")}
	var st streamSnapshot
	for _, x := range s.hub.snapshot() {
		if x.Key == key {
			st = x
		}
	}
	viewers := s.hls.viewers(key)
	for _, c := range st.Subscribers {
		if c.Protocol != protoHLS { // not the HLS muxer
			viewers++
		}
	}
	out := map[string]any{"isLive": false, "viewers": viewers, "duration": 0, "bitrate": 0,
		"startTime": nil, "arguments": map[string]string{}}
	if p := st.Publisher; p != nil {
		args := map[string]string{}
		q, _ := url.ParseQuery(p.Query)
		for k := range q {
			args[k] = q.Get(k)
			if isCredentialKey(k) {
				args[k] = redactValue(k, args[k])
			}
		}
		out["isLive"] = true
		out["duration"] = int(time.Since(st.Started).Seconds())
		out["bitrate"] = st.BitrateIn
		out["startTime"] = isoTime(st.Started)
		out["arguments"] = args
		out["video"], out["audio"] = st.Video, st.Audio
		out["bitrateIn30"], out["bitrateOut"], out["bitrateOut30"] = st.BitrateIn30, st.BitrateOut, st.BitrateOut30
	}
	writeJSON(w, http.StatusOK, out)
}

// apiKickStream disconnects a stream's publisher (NMS v2's DELETE).
func (s *httpServer) apiKickStream(w http.ResponseWriter, r *http.Request) {
	if !s.hub.kickStream(streamKey{r.PathValue("app"), r.PathValue("name")}) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "stream not found"})
		return
	}
	writeJSON(w, http.StatusOK, "ok")
}

// apiKickClient disconnects one publisher or viewer by its client id.
func (s *httpServer) apiKickClient(w http.ResponseWriter, r *http.Request) {
	if !s.hub.kickClient(r.PathValue("id")) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "client not found"})
		return
	}
	writeJSON(w, http.StatusOK, "ok")
}

// apiServer answers GET /api/server with NMS v2's keys (including its
// "totle" typo, which admin scripts read) and Go runtime figures.
func (s *httpServer) apiServer(w http.ResponseWriter, r *http.Request) {
	c := &s.hub.counters
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	memTotal, memFree := systemMemory()
	cpuSecs := processCPUSeconds()
	clients := map[string]any{"accepted": uint64(0), "active": int64(0), "idle": 0}
	var accepted uint64
	var active int64
	for _, p := range protocols {
		accepted += c.accepted[p].Load()
		active += c.active[p].Load()
		clients[p.String()] = c.active[p].Load()
	}
	clients["accepted"], clients["active"] = accepted, active
	uptime := time.Since(s.started).Seconds()
	writeJSON(w, http.StatusOK, map[string]any{
		"os":  map[string]any{"arch": runtime.GOARCH, "platform": runtime.GOOS, "release": osRelease()},
		"cpu": map[string]any{"num": runtime.NumCPU(), "load": s.cpu.sample(cpuSecs), "model": cpuModel(), "speed": 0},
		"mem": map[string]any{"totle": memTotal, "free": memFree},
		"net": map[string]any{"inbytes": c.bytesIn.Load(), "outbytes": c.bytesOut.Load()},
		"nodejs": map[string]any{"uptime": int(uptime), "version": runtime.Version(),
			"mem": map[string]any{"rss": processRSS(), "heapTotal": ms.HeapSys, "heapUsed": ms.HeapAlloc}},
		"go": map[string]any{"version": runtime.Version(), "goroutines": runtime.NumGoroutine(),
			"heapAlloc": ms.HeapAlloc, "heapInuse": ms.HeapInuse, "heapSys": ms.HeapSys, "numGC": ms.NumGC,
			"gcPauseTotalNs": ms.PauseTotalNs},
		"process":  map[string]any{"cpuSeconds": cpuSecs, "rss": processRSS(), "uptime": uptime},
		"clients":  clients,
		"streams":  len(s.hub.snapshot()),
		"version":  version,
		"rtmpPort": s.rtmpPort,
		"record":   s.rec != nil, // whether GET /api/recordings answers (the admin page asks only then)
	})
}

// cpuSampler measures the process's CPU load between API calls.
type cpuSampler struct {
	mu   sync.Mutex
	at   time.Time
	secs float64
	load float64
}

// sample is the process's share of all cores since the last sample (at
// least a second apart), as a fraction from 0 to 1.
func (c *cpuSampler) sample(cpuSecs float64) float64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if c.at.IsZero() || now.Sub(c.at) >= time.Second {
		if !c.at.IsZero() {
			c.load = (cpuSecs - c.secs) / now.Sub(c.at).Seconds() / float64(runtime.NumCPU())
		}
		c.at, c.secs = now, cpuSecs
	}
	return math.Round(c.load*1000) / 1000
}

// apiEvents streams lifecycle events as Server-Sent Events (HTML Living
// Standard §9.2): publish, unpublish, play, stop and kick.
func (s *httpServer) apiEvents(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fmt.Fprint(w, ": gms events\n\n")
	if rc.Flush() != nil {
		return
	}
	events, stop := s.hub.watch()
	defer stop()
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		rc.SetWriteDeadline(time.Now().Add(s.cfg.PingTimeout))
		select {
		case <-r.Context().Done():
			return
		case <-keepalive.C:
			fmt.Fprint(w, ": keepalive\n\n")
		case ev := <-events:
			data, _ := json.Marshal(map[string]any{"app": ev.Key.App, "stream": ev.Key.Name, "clientId": ev.Client.ID,
				"ip": ev.Client.IP, "protocol": ev.Client.Protocol, "query": redactQuery(ev.Client.Query), "reason": ev.Reason,
				"time": isoTime(ev.Time)})
			fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev.Type, data)
		}
		if rc.Flush() != nil {
			return
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// metrics answers GET /metrics in the Prometheus text format (version
// 0.0.4): counters and gauges of the whole server.
func (s *httpServer) metrics(w http.ResponseWriter, r *http.Request) {
	c := &s.hub.counters
	snaps := s.hub.snapshot()
	var b strings.Builder
	metric := func(name, typ, help string) {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, typ)
	}
	metric("gms_connections_accepted_total", "counter", "Connections accepted, by protocol.")
	for _, p := range protocols {
		fmt.Fprintf(&b, "gms_connections_accepted_total{protocol=%q} %d\n", p, c.accepted[p].Load())
	}
	metric("gms_connections_active", "gauge", "Open connections, by protocol.")
	for _, p := range protocols {
		fmt.Fprintf(&b, "gms_connections_active{protocol=%q} %d\n", p, c.active[p].Load())
	}
	metric("gms_connections_refused_total", "counter",
		"Connections refused over a limit: at accept (max-conns, max-conns-per-ip), or players over their share of max-conns.")
	fmt.Fprintf(&b, "gms_connections_refused_total{limit=\"conns\"} %d\n", c.tooManyConns.Load())
	fmt.Fprintf(&b, "gms_connections_refused_total{limit=\"players\"} %d\n", c.playersRefused.Load())
	live, viewers := 0, map[protocol]int{}
	for _, st := range snaps {
		if st.Publisher != nil {
			live++
		}
		for _, sub := range st.Subscribers {
			if sub.Protocol != protoHLS { // the HLS muxer
				viewers[sub.Protocol]++
			}
		}
		viewers[protoHLS] += s.hls.viewers(st.Key)
	}
	metric("gms_streams", "gauge", "Streams being published.")
	fmt.Fprintf(&b, "gms_streams %d\n", live)
	metric("gms_streams_by_codec", "gauge", "Streams being published, by video and audio codec.")
	byCodec := map[[2]string]int{}
	for _, st := range snaps {
		if st.Publisher == nil {
			continue
		}
		if st.Video != nil {
			byCodec[[2]string{"video", st.Video.Codec}]++
		}
		if st.Audio != nil {
			byCodec[[2]string{"audio", st.Audio.Codec}]++
		}
	}
	for _, kc := range slices.SortedFunc(maps.Keys(byCodec), func(a, b [2]string) int { return strings.Compare(a[0]+a[1], b[0]+b[1]) }) {
		fmt.Fprintf(&b, "gms_streams_by_codec{type=%q,codec=%q} %d\n", kc[0], kc[1], byCodec[kc])
	}
	metric("gms_viewers", "gauge", "Players connected, by protocol.")
	for _, p := range protocols {
		fmt.Fprintf(&b, "gms_viewers{protocol=%q} %d\n", p, viewers[p])
	}
	metric("gms_received_bytes_total", "counter", "Bytes received from RTMP peers.")
	fmt.Fprintf(&b, "gms_received_bytes_total %d\n", c.bytesIn.Load())
	metric("gms_sent_bytes_total", "counter", "Bytes sent to players and peers.")
	fmt.Fprintf(&b, "gms_sent_bytes_total %d\n", c.bytesOut.Load())
	metric("gms_dropped_frames_total", "counter", "Frames skipped for viewers that could not keep up.")
	fmt.Fprintf(&b, "gms_dropped_frames_total %d\n", c.drops.Load())
	if s.rec != nil {
		metric("gms_record_errors_total", "counter", "Recordings that could not be created or were cut short by a file error.")
		fmt.Fprintf(&b, "gms_record_errors_total %d\n", s.rec.errors.Load())
	}
	metric("gms_kicks_total", "counter", "Clients disconnected by the API or for being too slow.")
	fmt.Fprintf(&b, "gms_kicks_total %d\n", c.kicks.Load())
	metric("gms_viewers_stalled_total", "counter", "Viewers disconnected for taking nothing for -stall-time of media (also in gms_kicks_total).")
	fmt.Fprintf(&b, "gms_viewers_stalled_total %d\n", c.stalled.Load())
	metric("gms_socket_full_total", "counter", "Writes to a viewer that its socket could not take whole (it reads slower than the stream).")
	fmt.Fprintf(&b, "gms_socket_full_total %d\n", c.socketFull.Load())
	metric("gms_auth_failures_total", "counter", "Refused signatures, by protocol.")
	for _, p := range protocols {
		fmt.Fprintf(&b, "gms_auth_failures_total{protocol=%q} %d\n", p, c.authFailures[p].Load())
	}
	metric("gms_hook_rejections_total", "counter", "Publishers and players refused by a hook.")
	fmt.Fprintf(&b, "gms_hook_rejections_total %d\n", c.hookRejects.Load())
	metric("gms_hook_dropped_total", "counter", "Unpublish and stop events never posted: the hook answered slower than clients left.")
	fmt.Fprintf(&b, "gms_hook_dropped_total %d\n", c.hookDropped.Load())
	metric("gms_handshake_failures_total", "counter", "RTMP handshakes that failed.")
	fmt.Fprintf(&b, "gms_handshake_failures_total %d\n", c.handshakeFailures.Load())
	metric("gms_goroutines", "gauge", "Goroutines.")
	fmt.Fprintf(&b, "gms_goroutines %d\n", runtime.NumGoroutine())
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	metric("gms_heap_inuse_bytes", "gauge", "Go heap in use.")
	fmt.Fprintf(&b, "gms_heap_inuse_bytes %d\n", ms.HeapInuse)
	metric("gms_process_cpu_seconds_total", "counter", "CPU time of the process.")
	fmt.Fprintf(&b, "gms_process_cpu_seconds_total %g\n", processCPUSeconds())
	metric("gms_process_resident_memory_bytes", "gauge", "Resident memory of the process.")
	fmt.Fprintf(&b, "gms_process_resident_memory_bytes %d\n", processRSS())
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	io.WriteString(w, b.String())
}

// ---- Process and system figures (Linux /proc; zero elsewhere) ----

// processCPUSeconds is user+system CPU time from /proc/self/stat
// (fields 14 and 15, in clock ticks of 1/100 s on Linux).
func processCPUSeconds() float64 {
	data, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; count from after it.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseFloat(f[11], 64)
	stime, _ := strconv.ParseFloat(f[12], 64)
	return (utime + stime) / 100
}

// processRSS is the resident set size from /proc/self/statm.
func processRSS() int64 {
	data, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(data))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseInt(f[1], 10, 64)
	return pages * int64(os.Getpagesize())
}

// systemMemory is MemTotal and MemAvailable from /proc/meminfo, in bytes.
func systemMemory() (total, free int64) {
	data, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, 0
	}
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "MemTotal:":
			total = kb << 10
		case "MemAvailable:":
			free = kb << 10
		}
	}
	return total, free
}

func osRelease() string {
	data, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return strings.TrimSpace(string(data))
}

func cpuModel() string {
	data, _ := os.ReadFile("/proc/cpuinfo")
	for line := range strings.Lines(string(data)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// apiRelays lists the running relays in NMS v2's shape:
// {APP: {NAME: {relays: [...]}}}.
func (s *httpServer) apiRelays(w http.ResponseWriter, r *http.Request) {
	out := map[string]map[string]map[string][]relayInfo{}
	for _, ri := range s.relays.list() {
		if out[ri.App] == nil {
			out[ri.App] = map[string]map[string][]relayInfo{}
		}
		if out[ri.App][ri.Name] == nil {
			out[ri.App][ri.Name] = map[string][]relayInfo{"relays": {}}
		}
		out[ri.App][ri.Name]["relays"] = append(out[ri.App][ri.Name]["relays"], ri)
	}
	writeJSON(w, http.StatusOK, out)
}

// apiAddRelay is NMS v2's POST /api/relay/pull and /push: {url, app, name}
// as JSON or a form; the answer is the new relay's id as text.
func (s *httpServer) apiAddRelay(mode relayMode) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req struct{ URL, App, Name string }
		r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
		if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body: " + err.Error()})
				return
			}
		} else {
			if err := r.ParseForm(); err != nil {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body: " + err.Error()})
				return
			}
			req.URL, req.App, req.Name = r.PostForm.Get("url"), r.PostForm.Get("app"), r.PostForm.Get("name")
		}
		id, err := s.relays.addAPI(mode, req.App, req.Name, req.URL)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": redactErr(err.Error(), req.URL, mode == relayPush)})
			return
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, id)
	}
}

// apiDeleteRelay is NMS v2's DELETE /api/relay/ID: 200, or 404.
func (s *httpServer) apiDeleteRelay(w http.ResponseWriter, r *http.Request) {
	if !s.relays.deleteAPI(r.PathValue("id")) {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "relay not found"})
		return
	}
	writeJSON(w, http.StatusOK, "ok")
}
