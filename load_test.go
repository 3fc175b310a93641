package main

// TestLoad is the load tool: a real gms in its own process (so that its CPU
// and memory can be read from /proc), publishers sending synthetic 720p-
// sized frames at real-time pace, and thousands of viewers in this process
// that parse what they get. It skips unless GMS_LOAD is set:
//
//	GMS_LOAD=1000 GMS_LOAD_PROTO=http GMS_LOAD_DELAY=50ms go test -run TestLoad -v -count=1 .
//
//	GMS_LOAD          viewers in all (required)
//	GMS_LOAD_PROTO    rtmp, http, ws, hls, llhls, or several of them
//	                  comma-separated (viewers round robin: http,llhls is
//	                  half each, one row per protocol); mix is rtmp,http,ws;
//	                  default http
//	GMS_LOAD_DELAY    the server's -write-delay; default 0
//	GMS_LOAD_SECONDS  length of the measured window; default 20
//	GMS_LOAD_STREAMS  streams, viewers spread round robin; default 1
//	GMS_LOAD_EXTERNAL RTMPADDR,HTTPADDR,PID: measure a server that is already
//	                  running (node-media-server, nginx-rtmp, another gms) by
//	                  its PID, instead of starting gms; the same publisher and
//	                  viewers, so the numbers compare in one run
//	GMS_LOAD_KBIT     the publishers' bitrate, kbit/s; default about 1900
//	                  (frame sizes scale with it, the frame rate stays)
//	GMS_LOAD_STALL    how many of the viewers never read after their play
//	                  request (a stalled player): they are left out of the
//	                  delivery and delay numbers, and the run prints the
//	                  server's RSS each second of the window
//	GMS_LOAD_PROFILE  a file: run the server in this process instead and
//	                  write a CPU profile of the window there; the load
//	                  client's goroutines carry the label role=client, so
//	                  `go tool pprof -top -tagignore role=client FILE`
//	                  shows the server's share
//
// Each publisher sends 30 fps video (a 60000-byte keyframe each second,
// 5700-byte frames between) and 43 audio frames of 300 bytes a second,
// about 1.9 Mbit/s. Every video frame carries, after its 5-byte AVC
// header, the wall-clock time it was written to the socket (unix ns) and a
// sequence number. Viewers parse FLV (HTTP, WebSocket) or RTMP chunks and
// record, per video frame, now minus that time: the delay the path adds
// (publisher socket, server, viewer socket, the viewer's own scheduling).
// HLS viewers (hls, llhls) play index.m3u8 as hls.js does: hls reloads the
// playlist every target duration (half of it when nothing changed) and
// fetches each new segment; llhls is watchLLHLS (a blocking reload for the
// next part, then the part). Each has its own http.Transport with
// keep-alive, as each browser of an audience has its own connections; they
// parse the moof of what they get and record the same now minus send time
// for every video sample in it (the server copies the frame's bytes after
// the AVC header into mdat). Their row also gives the requests per second
// they made in the window.
//
// Viewers all join first; the window starts after that, so the numbers
// are those of steady state. It prints one line per run, a row of the
// table in the README.
//
// Nothing here asserts a duration: a run that delivers badly says so in
// its numbers.

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/bits"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

const (
	loadKeyBytes   = 60000
	loadInterBytes = 5700
	loadAudioBytes = 300
	loadFPS        = 30
	loadChunkSize  = 60000
)

type loadConfig struct {
	viewers, streams int
	proto            string
	delay            time.Duration
	window           time.Duration
	profile          string
	kbit             int // publishers' bitrate; 0: the default sizes
	stall            int // viewers that never read
}

func loadEnv(t *testing.T) loadConfig {
	n, err := strconv.Atoi(os.Getenv("GMS_LOAD"))
	if os.Getenv("GMS_LOAD") == "" {
		t.Skip("load test: set GMS_LOAD=viewers (see load_test.go)")
	}
	if err != nil || n <= 0 {
		t.Fatalf("GMS_LOAD=%q: want a number of viewers", os.Getenv("GMS_LOAD"))
	}
	lc := loadConfig{viewers: n, streams: 1, proto: "http", window: 20 * time.Second, profile: os.Getenv("GMS_LOAD_PROFILE")}
	if s := os.Getenv("GMS_LOAD_PROTO"); s != "" {
		lc.proto = s
	}
	if lc.proto == "mix" {
		lc.proto = "rtmp,http,ws"
	}
	for _, p := range strings.Split(lc.proto, ",") {
		switch p {
		case "rtmp", "http", "ws", "hls", "llhls":
		default:
			t.Fatalf("GMS_LOAD_PROTO=%q: want rtmp, http, ws, hls, llhls, or a comma-separated list", lc.proto)
		}
	}
	if s := os.Getenv("GMS_LOAD_DELAY"); s != "" {
		if lc.delay, err = time.ParseDuration(s); err != nil {
			t.Fatalf("GMS_LOAD_DELAY: %v", err)
		}
	}
	if s := os.Getenv("GMS_LOAD_SECONDS"); s != "" {
		secs, err := strconv.ParseFloat(s, 64)
		if err != nil || secs <= 0 {
			t.Fatalf("GMS_LOAD_SECONDS=%q", s)
		}
		lc.window = time.Duration(secs * float64(time.Second))
	}
	if s := os.Getenv("GMS_LOAD_STREAMS"); s != "" {
		if lc.streams, err = strconv.Atoi(s); err != nil || lc.streams <= 0 {
			t.Fatalf("GMS_LOAD_STREAMS=%q", s)
		}
	}
	if s := os.Getenv("GMS_LOAD_KBIT"); s != "" {
		if lc.kbit, err = strconv.Atoi(s); err != nil || lc.kbit <= 0 {
			t.Fatalf("GMS_LOAD_KBIT=%q", s)
		}
	}
	if s := os.Getenv("GMS_LOAD_STALL"); s != "" {
		if lc.stall, err = strconv.Atoi(s); err != nil || lc.stall < 0 || lc.stall > lc.viewers {
			t.Fatalf("GMS_LOAD_STALL=%q: want 0 to GMS_LOAD", s)
		}
	}
	return lc
}

// loadDefaultKbit is the bitrate of the default frame sizes: a keyframe,
// 29 other frames and 43 audio frames a second.
const loadDefaultKbit = (loadKeyBytes + (loadFPS-1)*loadInterBytes + 43*loadAudioBytes) * 8 / 1000

// loadSizes are the publishers' video frame sizes for kbit (0: default);
// audio stays as it is.
func loadSizes(kbit int) (key, inter int) {
	if kbit == 0 {
		return loadKeyBytes, loadInterBytes
	}
	scale := float64(kbit*1000/8-43*loadAudioBytes) / float64(loadKeyBytes+(loadFPS-1)*loadInterBytes)
	return max(int(loadKeyBytes*scale), 21), max(int(loadInterBytes*scale), 21)
}

func TestLoad(t *testing.T) {
	lc := loadEnv(t)
	var srv *loadServer
	if ext := os.Getenv("GMS_LOAD_EXTERNAL"); ext != "" {
		f := strings.Split(ext, ",")
		pid, err := strconv.Atoi(f[len(f)-1])
		if len(f) != 3 || err != nil {
			t.Fatalf("GMS_LOAD_EXTERNAL=%q: want RTMPADDR,HTTPADDR,PID", ext)
		}
		srv = &loadServer{rtmpAddr: f[0], httpAddr: f[1], pid: pid}
	} else if lc.profile != "" {
		srv = startLoadServerInProcess(t, lc)
	} else {
		srv = startLoadServerProcess(t, lc)
	}
	clientLabels := pprof.Labels("role", "client")
	var pubs []*loadPublisher
	var viewers []*loadViewer
	var wg sync.WaitGroup
	var stopping atomic.Bool

	// Publishers first, so that viewers join a running stream.
	pprof.Do(context.Background(), clientLabels, func(context.Context) {
		for i := range lc.streams {
			p, err := dialLoadPublisher(srv.rtmpAddr, fmt.Sprintf("s%d", i))
			if p != nil {
				p.keyBytes, p.interBytes = loadSizes(lc.kbit)
			}
			if err != nil {
				t.Fatalf("publisher %d: %v", i, err)
			}
			pubs = append(pubs, p)
			wg.Go(p.run)
		}
	})
	defer func() {
		for _, p := range pubs {
			p.close()
		}
	}()
	waitFor(t, "the publishers' first keyframes", func() bool {
		for _, p := range pubs {
			if p.seq.Load() == 0 {
				return false
			}
		}
		return true
	})
	rssStart, anonStart := srv.rss(), srv.rssAnon()

	// Viewers, at most 64 setting up at a time.
	protos := strings.Split(lc.proto, ",")
	hlsViewers := strings.Contains(lc.proto, "hls")
	rampStart := time.Now()
	sem := make(chan struct{}, 64)
	var ramp sync.WaitGroup
	pprof.Do(context.Background(), clientLabels, func(context.Context) {
		for i := range lc.viewers {
			v := &loadViewer{stream: i % lc.streams, proto: protos[i%len(protos)], stopping: &stopping,
				stalled: i < lc.stall, quit: make(chan struct{}), t: t}
			v.ctx, v.cancel = context.WithCancel(context.Background())
			if !v.stalled {
				v.samples = make([]loadSample, 0, int(lc.window.Seconds()+15)*loadFPS)
			}
			viewers = append(viewers, v)
			sem <- struct{}{}
			ramp.Add(1)
			wg.Go(func() {
				v.run(srv, fmt.Sprintf("s%d", v.stream), func() { <-sem; ramp.Done() })
			})
		}
	})
	ramp.Wait()
	rampTime := time.Since(rampStart)
	// Settle: every viewer has had its first keyframe, or has failed.
	settle := time.Now()
	for time.Since(settle) < 10*time.Second {
		waiting := 0
		for _, v := range viewers {
			if v.ttff.Load() == 0 && !v.failed.Load() && !v.stalled {
				waiting++
			}
		}
		if waiting == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	rssJoined, anonJoined := srv.rss(), srv.rssAnon()

	// The measured window.
	startSeq := make([]uint64, len(pubs))
	for i, p := range pubs {
		startSeq[i] = p.seq.Load() + 1
	}
	var prof *os.File
	if lc.profile != "" {
		var err error
		if prof, err = os.Create(lc.profile); err != nil {
			t.Fatal(err)
		}
		if err := pprof.StartCPUProfile(prof); err != nil {
			t.Fatal(err)
		}
	}
	requests := func() []int64 {
		n := make([]int64, len(viewers))
		for i, v := range viewers {
			n[i] = v.requests.Load()
		}
		return n
	}
	reqs0, cpu0, client0, t0 := requests(), srv.cpu(), processCPU(), time.Now()
	memory := srv.sampleMemory(t0.Add(lc.window))
	var rssSeries []int64 // with stalled viewers: RSS at each second of the window
	if lc.stall > 0 {
		for i := 1; time.Duration(i)*time.Second <= lc.window; i++ {
			time.Sleep(time.Until(t0.Add(time.Duration(i) * time.Second)))
			rssSeries = append(rssSeries, srv.rss())
		}
	}
	time.Sleep(time.Until(t0.Add(lc.window)))
	cpu1, client1, elapsed, reqs1 := srv.cpu(), processCPU(), time.Since(t0), requests()
	if prof != nil {
		pprof.StopCPUProfile()
		prof.Close()
	}
	endSeq := make([]uint64, len(pubs))
	for i, p := range pubs {
		endSeq[i] = p.seq.Load()
	}
	rssEnd, anonEnd := srv.rss(), srv.rssAnon()
	window := <-memory

	// Let what was sent in the window arrive (the write delay, a slow
	// viewer catching up), then stop.
	grace := time.Now()
	graceTime := 2*time.Second + 4*lc.delay
	if hlsViewers { // a segment, a reload interval and the fetch
		graceTime = 8 * time.Second
	}
	for time.Since(grace) < graceTime {
		behind := 0
		for _, v := range viewers {
			if !v.failed.Load() && !v.stalled && v.lastSeq.Load() < endSeq[v.stream] {
				behind++
			}
		}
		if behind == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	drops, kicks := srv.dropsKicks()
	stopping.Store(true)
	for _, v := range viewers {
		v.close()
	}
	for _, p := range pubs {
		p.close()
	}
	wg.Wait()
	for _, p := range pubs {
		if p.err != nil && !errors.Is(p.err, net.ErrClosed) {
			t.Errorf("publisher: %v", p.err)
		}
	}

	// Results: a row per protocol.
	type protoResult struct {
		delays, ttffs   []time.Duration
		got, want, reqs int64
		failed          int
		firstErr        error
	}
	results := map[string]*protoResult{}
	var firstErr error
	failed := 0
	for i, v := range viewers {
		if v.stalled {
			continue
		}
		r := results[v.proto]
		if r == nil {
			r = &protoResult{}
			results[v.proto] = r
		}
		r.reqs += reqs1[i] - reqs0[i]
		if v.failed.Load() {
			failed++
			r.failed++
			if firstErr == nil {
				firstErr = v.err
			}
		}
		if d := v.ttff.Load(); d > 0 {
			r.ttffs = append(r.ttffs, time.Duration(d))
		}
		lo, hi := startSeq[v.stream], endSeq[v.stream]
		r.want += int64(hi - lo + 1)
		for _, s := range v.samples {
			if s.seq >= lo && s.seq <= hi {
				r.got++
				r.delays = append(r.delays, time.Duration(s.delay))
			}
		}
	}
	if firstErr != nil {
		t.Logf("%d viewers failed; first: %v", failed, firstErr)
	}
	if srv.warnings.Load() > 0 {
		t.Logf("server warnings: %d; last: %s", srv.warnings.Load(), srv.lastWarning())
	}
	if len(rssSeries) > 0 {
		var line strings.Builder
		for _, r := range rssSeries {
			fmt.Fprintf(&line, " %.1f", float64(r)/(1<<20))
		}
		mid := rssSeries[(len(rssSeries)-1)/2]
		stallRow := fmt.Sprintf("stalled viewers %d of %d, %s, %d kbit/s: RSS joined %.1f MB; growth %+.1f MB over the window, %+.1f MB in its second half; RSS each second (MB):%s",
			lc.stall, lc.viewers, lc.proto, max(lc.kbit, loadDefaultKbit), float64(rssJoined)/(1<<20),
			float64(rssEnd-rssJoined)/(1<<20), float64(rssEnd-mid)/(1<<20), line.String())
		t.Log(stallRow)
		fmt.Println(stallRow)
	}
	viewerSecs := float64(lc.viewers) * elapsed.Seconds()
	serverCPU := "in-process"
	serverCores := "-"
	if srv.pid != 0 {
		serverCPU = fmt.Sprintf("%.3f", float64((cpu1-cpu0).Microseconds())/1000/viewerSecs)
		serverCores = fmt.Sprintf("%.2f", (cpu1-cpu0).Seconds()/elapsed.Seconds())
	}
	delayName := "0"
	if lc.delay > 0 {
		delayName = lc.delay.String()
	}
	loadAvg := "-"
	if data, err := os.ReadFile("/proc/loadavg"); err == nil {
		loadAvg = strings.Fields(string(data))[0]
	}
	const header = "| proto | streams × viewers | write-delay | delivered | added delay p50 / p95 / p99 | first frame p50 / p99 | requests/s | server CPU ms per viewer-s | server cores | server RSS start → joined → end | of which anonymous | drops / kicks | failed | client cores | join time | load avg | server RSS mean / max in the window | of which anonymous |"
	t.Log(header)
	fmt.Println(header)
	for _, proto := range slices.Sorted(maps.Keys(results)) {
		r := results[proto]
		viewersOf := 0
		for _, v := range viewers {
			if v.proto == proto {
				viewersOf++
			}
		}
		row := fmt.Sprintf("| %s | %d × %d | %s | %.2f%% | %s / %s / %s | %s / %s | %.0f | %s | %s | %s → %s → %s | %s → %s → %s | %d / %d | %d | %.2f | %s | %s | %s | %s |",
			proto, lc.streams, viewersOf/lc.streams, delayName,
			100*float64(r.got)/float64(max(r.want, 1)),
			loadMs(loadPercentile(r.delays, 0.50)), loadMs(loadPercentile(r.delays, 0.95)), loadMs(loadPercentile(r.delays, 0.99)),
			loadMs(loadPercentile(r.ttffs, 0.50)), loadMs(loadPercentile(r.ttffs, 0.99)),
			float64(r.reqs)/elapsed.Seconds(),
			serverCPU, serverCores,
			loadMB(rssStart), loadMB(rssJoined), loadMB(rssEnd), loadMB(anonStart), loadMB(anonJoined), loadMB(anonEnd),
			drops, kicks, r.failed,
			(client1-client0).Seconds()/elapsed.Seconds(), rampTime.Round(10*time.Millisecond), loadAvg,
			window.rss, window.anon)
		t.Log(row)
		fmt.Println(row)
	}
	if len(results) > 1 {
		note := fmt.Sprintf("(%d viewers in all: server CPU, cores and RSS are the whole run's, per viewer-second of all viewers)", lc.viewers)
		t.Log(note)
		fmt.Println(note)
	}
}

func loadPercentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return -1
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, int(p*float64(len(ds))))]
}

func loadMs(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
}

func loadMB(b int64) string { return fmt.Sprintf("%.0f MB", float64(b)/(1<<20)) }

// ---- The server under load ----

type loadServer struct {
	rtmpAddr, httpAddr string
	pid                int // 0: in this process
	warnings           atomic.Int64
	mu                 sync.Mutex
	lastWarn           string
	inProc             *testServer
}

func (s *loadServer) lastWarning() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastWarn
}

// cpu is the server's user+system time so far: from /proc/PID/stat for a
// server process, this process's for an in-process one.
func (s *loadServer) cpu() time.Duration {
	if s.pid == 0 {
		return processCPU()
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.pid))
	if err != nil {
		return 0
	}
	// Fields after "(comm)": state is field 3; utime and stime are 14 and 15.
	rest := string(data[strings.LastIndexByte(string(data), ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const clockTick = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / clockTick
}

// windowMemory is the server's RSS and its anonymous part over the
// measured window, each as "mean / max".
type windowMemory struct{ rss, anon string }

// sampleMemory reads the server's RSS every 250 ms until end, and then
// sends their means and highest values: a number read once lands
// anywhere on the GC's sawtooth.
func (s *loadServer) sampleMemory(end time.Time) <-chan windowMemory {
	out := make(chan windowMemory, 1)
	go func() {
		var n, rss, anon, maxRSS, maxAnon int64
		for time.Now().Before(end) {
			r, a := s.rss(), s.rssAnon()
			n, rss, anon, maxRSS, maxAnon = n+1, rss+r, anon+a, max(maxRSS, r), max(maxAnon, a)
			time.Sleep(250 * time.Millisecond)
		}
		mb := func(total, highest int64) string {
			return fmt.Sprintf("%.1f / %.1f MB", float64(total)/float64(max(n, 1))/(1<<20), float64(highest)/(1<<20))
		}
		out <- windowMemory{mb(rss, maxRSS), mb(anon, maxAnon)}
	}()
	return out
}

// rss is the server's resident set (VmRSS).
func (s *loadServer) rss() int64 { return s.status("VmRSS:") }

// rssAnon is the part of rss that is the process's own memory (RssAnon):
// the rest is pages of its executable and libraries, shared with the
// page cache.
func (s *loadServer) rssAnon() int64 { return s.status("RssAnon:") }

// status reads one size in kB from the server's /proc status, in bytes.
func (s *loadServer) status(field string) int64 {
	path := "/proc/self/status"
	if s.pid != 0 {
		path = fmt.Sprintf("/proc/%d/status", s.pid)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, field); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

// dropsKicks reads the server's counters from /metrics.
func (s *loadServer) dropsKicks() (drops, kicks int64) {
	resp, err := http.Get("http://" + s.httpAddr + "/metrics")
	if err != nil {
		return -1, -1
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	for line := range strings.Lines(string(data)) {
		if v, ok := strings.CutPrefix(line, "gms_dropped_frames_total "); ok {
			drops, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
		if v, ok := strings.CutPrefix(line, "gms_kicks_total "); ok {
			kicks, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return drops, kicks
}

// startLoadServerProcess builds gms and runs it on loopback ports it
// picks itself, reading its log for the addresses and for warnings.
func startLoadServerProcess(t *testing.T, lc loadConfig) *loadServer {
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "gms")
	if out, err := exec.Command(goTool, "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-rtmp", "127.0.0.1:0", "-http", "127.0.0.1:0",
		"-write-delay", lc.delay.String(), "-log-level", "info")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	s := &loadServer{pid: cmd.Process.Pid}
	addrs := make(chan [2]string, 1)
	go func() {
		listening := regexp.MustCompile(`msg="gms listening" rtmp=(\S+) http=(\S+)`)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if m := listening.FindStringSubmatch(line); m != nil {
				addrs <- [2]string{m[1], m[2]}
			}
			if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
				s.warnings.Add(1)
				s.mu.Lock()
				s.lastWarn = line
				s.mu.Unlock()
			}
		}
		exited <- cmd.Wait()
	}()
	select {
	case a := <-addrs:
		s.rtmpAddr, s.httpAddr = a[0], a[1]
	case err := <-exited:
		t.Fatalf("gms exited: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("gms: %v", err)
			}
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			t.Errorf("gms did not exit on SIGTERM")
		}
	})
	return s
}

// startLoadServerInProcess runs the server in this process, for a CPU
// profile of it.
func startLoadServerInProcess(t *testing.T, lc loadConfig) *loadServer {
	ts := startServer(t, func(c *config) {
		c.WriteDelay = lc.delay
		c.LogLevel = slog.LevelWarn
	})
	return &loadServer{rtmpAddr: ts.rtmpAddr, httpAddr: ts.httpAddr, inProc: ts}
}

// ---- Publisher ----

// loadPublisher publishes one synthetic stream in real time.
type loadPublisher struct {
	nc    net.Conn
	seq   atomic.Uint64 // sequence number of the last video frame sent
	done  chan struct{}
	once  sync.Once
	err   error
	inbox sync.WaitGroup
	// The video frame sizes (loadSizes).
	keyBytes, interBytes int
}

// loadCommand encodes an AMF0 command at chunk size.
func loadCommand(streamID uint32, chunkSize int, values ...any) []byte {
	return appendChunks(nil, csidCommand, msgCommandAMF0, streamID, 0, amf0AppendAll(nil, values...), chunkSize)
}

// loadExpect reads messages until a command named name arrives.
func loadExpect(cr *chunkReader, name string) (rtmpCommand, error) {
	for {
		msg, err := cr.readMessage()
		if err != nil {
			return rtmpCommand{}, fmt.Errorf("waiting for %s: %w", name, err)
		}
		if msg.Type != msgCommandAMF0 {
			continue
		}
		cmd, err := decodeCommand(msg.Payload)
		if err != nil {
			return cmd, err
		}
		if cmd.Name == name {
			return cmd, nil
		}
		if cmd.Name == "_error" {
			return cmd, fmt.Errorf("waiting for %s: _error %v", name, cmd.Args)
		}
	}
}

// loadConnect handshakes, connects to app live and creates a stream.
func loadConnect(nc net.Conn, chunkSize int) (*chunkReader, *bufio.Reader, error) {
	nc.SetDeadline(time.Now().Add(30 * time.Second))
	if err := clientHandshake(nc, false); err != nil {
		return nil, nil, err
	}
	br := bufio.NewReaderSize(nc, 16<<10)
	cr := newChunkReader(br)
	var out []byte
	if chunkSize != 128 {
		out = appendUint32Control(out, msgSetChunkSize, uint32(chunkSize))
	}
	out = append(out, loadCommand(0, chunkSize, "connect", 1.0,
		amfObject{{"app", "live"}, {"type", "nonprivate"}, {"tcUrl", "rtmp://127.0.0.1/live"}})...)
	out = append(out, loadCommand(0, chunkSize, "createStream", 2.0, nil)...)
	if _, err := nc.Write(out); err != nil {
		return nil, nil, err
	}
	if _, err := loadExpect(cr, "_result"); err != nil {
		return nil, nil, err
	}
	if _, err := loadExpect(cr, "_result"); err != nil {
		return nil, nil, err
	}
	nc.SetDeadline(time.Time{})
	return cr, br, nil
}

func dialLoadPublisher(addr, name string) (*loadPublisher, error) {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	cr, br, err := loadConnect(nc, loadChunkSize)
	if err == nil {
		_, err = nc.Write(loadCommand(mediaStreamID, loadChunkSize, "publish", 3.0, nil, name, "live"))
	}
	if err == nil {
		var cmd rtmpCommand
		if cmd, err = loadExpect(cr, "onStatus"); err == nil {
			if obj, _ := cmd.Args[0].(amfObject); obj.String("code") != "NetStream.Publish.Start" {
				err = fmt.Errorf("publish: %v", cmd.Args)
			}
		}
	}
	if err != nil {
		nc.Close()
		return nil, err
	}
	p := &loadPublisher{nc: nc, done: make(chan struct{})}
	// The server sends little to a publisher; read it so it never blocks.
	p.inbox.Go(func() { io.Copy(io.Discard, br) })
	return p, nil
}

func (p *loadPublisher) close() {
	p.once.Do(func() {
		close(p.done)
		p.nc.Close()
	})
}

// run sends headers, then video and audio at real-time pace until closed.
func (p *loadPublisher) run() {
	defer p.inbox.Wait()
	var out []byte
	send := func(typ uint8, csid uint32, ts uint32, payload []byte) bool {
		out = appendChunks(out[:0], csid, typ, mediaStreamID, ts, payload, loadChunkSize)
		if _, err := p.nc.Write(out); err != nil {
			select {
			case <-p.done:
			default:
				p.err = err
			}
			return false
		}
		return true
	}
	h := fanHeaders()
	for _, m := range h {
		csid := uint32(csidData)
		switch m.typ {
		case msgAudio:
			csid = csidAudio
		case msgVideo:
			csid = csidVideo
		}
		if !send(m.typ, csid, 0, m.payload) {
			return
		}
	}
	key := fanFill(make([]byte, p.keyBytes), 3)
	inter := fanFill(make([]byte, p.interBytes), 5)
	audio := fanFill(make([]byte, loadAudioBytes), 7)
	audio[0], audio[1] = 0xAF, 0x01
	key[0], inter[0] = 0x17, 0x27
	for _, b := range [][]byte{key, inter} {
		b[1], b[2], b[3], b[4] = 1, 0, 0, 0
	}
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	var v, a int64
	for {
		vAt := time.Duration(v) * time.Second / loadFPS
		aAt := time.Duration(a) * time.Second * 1024 / 44100
		at := min(vAt, aAt)
		if wait := time.Until(start.Add(at)); wait > 0 {
			timer.Reset(wait)
			select {
			case <-timer.C:
			case <-p.done:
				return
			}
		}
		ts := uint32(at / time.Millisecond)
		if vAt <= aAt {
			b := inter
			if v%loadFPS == 0 {
				b = key
			}
			seq := uint64(v + 1)
			binary.BigEndian.PutUint64(b[13:], seq)
			binary.BigEndian.PutUint64(b[5:], uint64(time.Now().UnixNano()))
			if !send(msgVideo, csidVideo, ts, b) {
				return
			}
			p.seq.Store(seq)
			v++
		} else {
			if !send(msgAudio, csidAudio, ts, audio) {
				return
			}
			a++
		}
	}
}

// ---- Viewers ----

type loadSample struct {
	seq   uint64
	delay int64 // ns
}

type loadViewer struct {
	stream   int
	proto    string
	stalled  bool // reads nothing after its play request
	stopping *atomic.Bool
	start    time.Time
	ttff     atomic.Int64 // ns from dialing to the first keyframe; 0 until then
	lastSeq  atomic.Uint64
	failed   atomic.Bool
	err      error
	samples  []loadSample // owned by the viewer's goroutine until it ends
	requests atomic.Int64 // HTTP requests made (HLS)

	t      *testing.T // for the HLS playlist parser
	ctx    context.Context
	cancel context.CancelFunc // by close: ends an HLS request

	mu     sync.Mutex
	nc     net.Conn
	closed bool
	quit   chan struct{} // closed by close
}

// stall is a stalled viewer's life after its play request: it reads
// nothing until the run ends.
func (v *loadViewer) stall() error {
	<-v.quit
	return net.ErrClosed
}

func (v *loadViewer) setConn(nc net.Conn) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.nc = nc
	if v.closed {
		nc.Close()
	}
	return !v.closed
}

func (v *loadViewer) close() {
	v.mu.Lock()
	defer v.mu.Unlock()
	if !v.closed {
		close(v.quit)
	}
	v.closed = true
	v.cancel()
	if v.nc != nil {
		v.nc.Close()
	}
}

// run connects, calls ready once set up (or failed), then reads until
// the connection closes.
func (v *loadViewer) run(srv *loadServer, name string, ready func()) {
	var once sync.Once
	readyOnce := func() { once.Do(ready) }
	defer readyOnce()
	v.start = time.Now()
	var err error
	switch v.proto {
	case "http":
		err = v.runHTTP(srv.httpAddr, name, readyOnce)
	case "ws":
		err = v.runWS(srv.httpAddr, name, readyOnce)
	case "rtmp":
		err = v.runRTMP(srv.rtmpAddr, name, readyOnce)
	case "hls", "llhls":
		err = v.runHLS(srv.httpAddr, name, readyOnce)
	}
	if !v.stopping.Load() {
		v.err = fmt.Errorf("%s viewer: %w", v.proto, err)
		v.failed.Store(true)
	}
}

// video records one video tag's payload.
func (v *loadViewer) video(p []byte) {
	if len(p) < 21 || p[1] != 1 {
		return // a sequence header
	}
	v.frame(p[5:], p[0]>>4 == 1, time.Now())
}

// frame records a video frame's body (after the AVC header: its send time
// and sequence number) received at now; nothing before the first keyframe.
func (v *loadViewer) frame(body []byte, key bool, now time.Time) {
	if v.ttff.Load() == 0 && key {
		v.ttff.Store(int64(max(now.Sub(v.start), 1)))
	}
	if v.ttff.Load() == 0 {
		return
	}
	seq := binary.BigEndian.Uint64(body[8:16])
	v.samples = append(v.samples, loadSample{seq, now.UnixNano() - int64(binary.BigEndian.Uint64(body[:8]))})
	v.lastSeq.Store(seq)
}

// readFLV parses FLV tags, looking only at the first bytes of video.
func (v *loadViewer) readFLV(br *bufio.Reader) error {
	h, err := br.Peek(flvHeaderLen + 4)
	if err != nil {
		return err
	}
	if string(h[:3]) != "FLV" {
		return errFLVSignature
	}
	br.Discard(len(h))
	for {
		h, err := br.Peek(flvTagHeaderLen)
		if err != nil {
			return err
		}
		typ, n := h[0]&0x1F, int(be24(h[1:4]))
		br.Discard(flvTagHeaderLen)
		if typ == tagVideo && n >= 21 {
			p, err := br.Peek(21)
			if err != nil {
				return err
			}
			v.video(p)
		}
		if _, err := br.Discard(n + 4); err != nil {
			return err
		}
	}
}

func (v *loadViewer) runHTTP(addr, name string, ready func()) error {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	if !v.setConn(nc) {
		return net.ErrClosed
	}
	fmt.Fprintf(nc, "GET /live/%s.flv HTTP/1.1\r\nHost: %s\r\n\r\n", name, addr)
	if v.stalled {
		ready()
		return v.stall()
	}
	br := bufio.NewReaderSize(nc, 16<<10)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	ready()
	if resp.TransferEncoding != nil { // NMS sends the stream chunked
		return v.readFLV(bufio.NewReaderSize(resp.Body, 16<<10))
	}
	return v.readFLV(br)
}

func (v *loadViewer) runWS(addr, name string, ready func()) error {
	c, err := dialWS(context.Background(), addr, "/live/"+name+".flv")
	if err != nil {
		return err
	}
	if !v.setConn(c.nc) {
		return net.ErrClosed
	}
	ready()
	if v.stalled {
		return v.stall()
	}
	return v.readFLV(bufio.NewReaderSize(&loadWSReader{c: c}, 16<<10))
}

// loadWSReader reads the payload of the server's binary frames.
type loadWSReader struct {
	c    *wsClient
	left uint64 // payload bytes left in the current frame
}

func (r *loadWSReader) Read(p []byte) (int, error) {
	for r.left == 0 {
		var h [8]byte
		if _, err := io.ReadFull(r.c.br, h[:2]); err != nil {
			return 0, err
		}
		op, n := h[0]&0x0F, uint64(h[1]&0x7F)
		switch n {
		case 126:
			if _, err := io.ReadFull(r.c.br, h[:2]); err != nil {
				return 0, err
			}
			n = uint64(binary.BigEndian.Uint16(h[:2]))
		case 127:
			if _, err := io.ReadFull(r.c.br, h[:8]); err != nil {
				return 0, err
			}
			n = binary.BigEndian.Uint64(h[:8])
		}
		switch op {
		case wsOpBinary, wsOpContinuation:
			r.left = n
		case wsOpClose:
			return 0, io.EOF
		default:
			payload := make([]byte, n)
			if _, err := io.ReadFull(r.c.br, payload); err != nil {
				return 0, err
			}
			if op == wsOpPing {
				r.c.writeFrame(wsOpPong, payload)
			}
		}
	}
	n, err := r.c.br.Read(p[:min(uint64(len(p)), r.left)])
	r.left -= uint64(n)
	return n, err
}

func (v *loadViewer) runRTMP(addr, name string, ready func()) error {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	if !v.setConn(nc) {
		return net.ErrClosed
	}
	cr, _, err := loadConnect(nc, 128)
	if err != nil {
		return err
	}
	if _, err := nc.Write(loadCommand(mediaStreamID, 128, "play", 3.0, nil, name)); err != nil {
		return err
	}
	ready()
	if v.stalled {
		return v.stall()
	}
	for {
		msg, err := cr.readMessage()
		if err != nil {
			return err
		}
		switch msg.Type {
		case msgVideo:
			v.video(msg.Payload)
		case msgUserControl:
			if len(msg.Payload) >= 6 && binary.BigEndian.Uint16(msg.Payload) == ucPingRequest {
				nc.Write(appendUserControl(nil, ucPingResponse, binary.BigEndian.Uint32(msg.Payload[2:])))
			}
		}
	}
}

// runHLS plays name's index.m3u8: llhls as watchLLHLS, hls as hls.js
// without low-latency mode (RFC 8216bis §6.3.4: reload after a target
// duration, after half of it when the playlist had not changed, which
// with parts listed it always has; fetch each new segment in order, from
// the newest at the start).
func (v *loadViewer) runHLS(addr, name string, ready func()) error {
	client := &http.Client{Transport: &http.Transport{}} // this viewer's own connections, kept alive
	defer client.CloseIdleConnections()
	var buf []byte // every body in turn: the viewer is done with one before the next
	get := func(url string) (int, []byte, error) {
		req, err := http.NewRequestWithContext(v.ctx, "GET", url, nil)
		if err != nil {
			return 0, nil, err
		}
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil, err
		}
		defer resp.Body.Close()
		v.requests.Add(1)
		if resp.ContentLength < 0 || resp.ContentLength > 64<<20 {
			b, err := io.ReadAll(resp.Body)
			return resp.StatusCode, b, err
		}
		buf = slices.Grow(buf[:0], int(resp.ContentLength))[:resp.ContentLength]
		_, err = io.ReadFull(resp.Body, buf)
		return resp.StatusCode, buf, err
	}
	base := "http://" + addr + "/live/" + name + "/"
	status, b, err := get(base + "index.m3u8")
	if err != nil {
		return err
	}
	if status != 200 {
		return fmt.Errorf("index.m3u8: %d %s", status, b)
	}
	ready()
	pl := parseM3U8(v.t, b)
	stop := func() bool { return v.ctx.Err() != nil }
	if v.proto == "llhls" {
		if err := watchLLHLS(v.t, get, base, pl, stop, func(_ string, data []byte) { v.fragment(data) }); err != nil && !stop() {
			return err
		}
		return net.ErrClosed
	}
	last := -1 // the media sequence number of the last segment fetched
	var edge, prevEdge [2]int
	for !stop() {
		reloaded := time.Now()
		// Changed: a segment or a part more (hls.js's LevelDetails.reloaded).
		edge = [2]int{pl.mediaSequence + pl.skipped + len(pl.segments), len(pl.openParts)}
		changed := edge != prevEdge
		prevEdge = edge
		for i, s := range pl.segments {
			msn := pl.mediaSequence + pl.skipped + i
			if msn <= last || last < 0 && i < len(pl.segments)-1 {
				continue
			}
			status, data, err := get(base + s.uri)
			if err != nil {
				return err
			}
			if status != 200 {
				return fmt.Errorf("%s: %d", s.uri, status)
			}
			v.fragment(data)
			last = msn
		}
		wait := time.Duration(pl.targetDuration) * time.Second
		if !changed {
			wait /= 2
		}
		select {
		case <-time.After(time.Until(reloaded.Add(wait))):
		case <-v.ctx.Done():
			return net.ErrClosed
		}
		status, b, err := get(base + "index.m3u8")
		if err != nil {
			return err
		}
		if status != 200 {
			return fmt.Errorf("index.m3u8: %d %s", status, b)
		}
		pl = parseM3U8(v.t, b)
	}
	return net.ErrClosed
}

// fragment records the video samples of a segment or part: moof and mdat
// pairs (ISO/IEC 14496-12 §8.8.4), whose video trun (the one with
// sample flags, §8.8.8) gives each sample's size from its data offset
// (tfhd default-base-is-moof). A box that does not fit ends it.
func (v *loadViewer) fragment(b []byte) {
	now := time.Now()
	for len(b) >= 8 {
		size := int(binary.BigEndian.Uint32(b))
		if size < 8 || size > len(b) {
			return
		}
		if string(b[4:8]) == "moof" {
			moof := b
			for traf := range loadBoxes(moof[8:size], "traf") {
				trun := loadBox(traf[8:], "trun")
				if len(trun) < 20 {
					continue
				}
				flags := binary.BigEndian.Uint32(trun[8:]) & 0xFFFFFF
				if flags&0x400 == 0 || flags&0x201 != 0x201 {
					continue // audio, or no data offset
				}
				count := int(binary.BigEndian.Uint32(trun[12:]))
				off := int(int32(binary.BigEndian.Uint32(trun[16:])))
				fields := trun[20:]
				per := 4 * bits.OnesCount32(flags&0xF00)
				if flags&0x004 != 0 {
					fields = fields[min(4, len(fields)):]
				}
				for range count {
					if len(fields) < per {
						break
					}
					var sz, sflags int
					f := fields
					if flags&0x100 != 0 {
						f = f[4:]
					}
					sz = int(binary.BigEndian.Uint32(f))
					sflags = int(binary.BigEndian.Uint32(f[4:]))
					fields = fields[per:]
					if off < 0 || off+sz > len(moof) || sz < 16 {
						return
					}
					v.frame(moof[off:off+sz], sflags&0x10000 == 0, now)
					off += sz
				}
			}
		}
		b = b[size:]
	}
}

// loadBoxes yields the boxes of type typ among b's children.
func loadBoxes(b []byte, typ string) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(b) >= 8 {
			size := int(binary.BigEndian.Uint32(b))
			if size < 8 || size > len(b) {
				return
			}
			if string(b[4:8]) == typ && !yield(b[:size]) {
				return
			}
			b = b[size:]
		}
	}
}

func loadBox(b []byte, typ string) []byte {
	for box := range loadBoxes(b, typ) {
		return box
	}
	return nil
}

// loadFragmentSample is a fragment as gms makes one: an audio run, then a
// video run of a keyframe and a frame carrying send times 1000 and 2000
// and sequence numbers 1 and 2.
func loadFragmentSample() []byte {
	frame := func(sent, seq uint64) []byte {
		b := binary.BigEndian.AppendUint64(nil, sent)
		return binary.BigEndian.AppendUint64(b, seq)
	}
	audio := &mp4Track{id: 2}
	video := &mp4Track{id: 1, video: true}
	return appendFragment(nil, 1, []mp4Run{
		{track: audio, samples: []mp4Sample{{dur: 1024, data: make([]byte, 20)}}},
		{track: video, samples: []mp4Sample{{dur: 3000, key: true, data: frame(1000, 1)}, {dur: 3000, cto: 3000, data: frame(2000, 2)}}},
	})
}

func TestLoadFragment(t *testing.T) {
	start := time.Now()
	v := &loadViewer{start: start}
	v.fragment(loadFragmentSample())
	end := time.Now()
	if len(v.samples) != 2 || v.samples[0].seq != 1 || v.samples[1].seq != 2 || v.ttff.Load() == 0 {
		t.Fatalf("samples %+v, first keyframe after %d ns; want sequence numbers 1 and 2 from a keyframe", v.samples, v.ttff.Load())
	}
	// delay is the time received minus the send time.
	if got := v.samples[1].delay + 2000; got < start.UnixNano() || got > end.UnixNano() {
		t.Errorf("second sample: delay %d ns; want now minus 2000 ns", v.samples[1].delay)
	}
}

// FuzzLoadFragment: what the load tool's HLS viewers parse never panics.
func FuzzLoadFragment(f *testing.F) {
	f.Add(loadFragmentSample())
	f.Fuzz(func(t *testing.T, b []byte) {
		v := &loadViewer{start: time.Now()}
		v.fragment(b)
	})
}
