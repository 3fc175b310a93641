package main

// Admin page tests: a real server, ffmpeg publishing, and headless
// Chromium loading /admin/. The browser is driven over the DevTools
// protocol on a pipe (--remote-debugging-pipe: NUL-terminated JSON
// messages, commands on fd 3, answers and events on fd 4), so the test
// can read the DOM and the <video> element's state while the page runs
// in real time, and take a screenshot.

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// needChromium returns the Chromium binary. Like needFFmpeg, it skips on a
// laptop without it and fails on CI, so the admin tests cannot silently
// vanish there (Debian package: chromium).
func needChromium(t testing.TB) string {
	t.Helper()
	skipShort(t)
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("chromium not found on CI: .ci/run must install it (apt-get install chromium)")
	}
	t.Skip("chromium not found: apt-get install chromium to run the admin page tests")
	return ""
}

// ---- a minimal DevTools protocol client ----

type cdpMessage struct {
	ID        int             `json:"id,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	Error     *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

type cdpBrowser struct {
	cmd    *exec.Cmd
	w      *os.File
	stderr *syncBuffer
	exited chan struct{}

	wmu     sync.Mutex // one message at a time on the pipe
	mu      sync.Mutex
	nextID  int
	waiting map[int]chan cdpMessage
	logs    []string // console messages and exceptions of the pages
}

// startChromium starts headless Chromium for one test; it is closed when
// the test ends.
func startChromium(t testing.TB) *cdpBrowser {
	t.Helper()
	bin := needChromium(t)
	dir, err := os.MkdirTemp("", "gms-chromium")
	if err != nil {
		t.Fatal(err)
	}
	cmdR, cmdW, err := os.Pipe() // we write commands, Chromium reads fd 3
	if err != nil {
		t.Fatal(err)
	}
	evR, evW, err := os.Pipe() // Chromium writes fd 4, we read
	if err != nil {
		t.Fatal(err)
	}
	b := &cdpBrowser{w: cmdW, stderr: &syncBuffer{}, exited: make(chan struct{}), waiting: map[int]chan cdpMessage{}}
	b.cmd = exec.Command(bin, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--no-default-browser-check", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
		"--autoplay-policy=no-user-gesture-required", "--window-size=1280,1200",
		"--user-data-dir="+dir, "--remote-debugging-pipe", "about:blank")
	b.cmd.ExtraFiles = []*os.File{cmdR, evW}
	b.cmd.Stdout, b.cmd.Stderr = b.stderr, b.stderr
	if err := b.cmd.Start(); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	cmdR.Close()
	evW.Close()
	go func() {
		b.cmd.Wait()
		close(b.exited)
	}()
	go b.readLoop(evR)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		b.call(ctx, "", "Browser.close", nil, nil)
		cancel()
		select {
		case <-b.exited:
		case <-time.After(5 * time.Second):
			b.cmd.Process.Kill()
			<-b.exited
		}
		cmdW.Close()
		evR.Close()
		for range 20 { // child processes may still be writing their profile
			if os.RemoveAll(dir) == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if t.Failed() {
			t.Logf("browser console:\n%s", strings.Join(b.consoleLogs(), "\n"))
		}
	})
	// The first answer proves the browser is up.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	start := time.Now()
	if err := b.call(ctx, "", "Browser.getVersion", nil, nil); err != nil {
		t.Fatalf("chromium does not answer: %v\n%s", err, b.stderr.String())
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Logf("chromium took %v to start", d.Round(time.Millisecond))
	}
	return b
}

func (b *cdpBrowser) readLoop(r *os.File) {
	br := bufio.NewReaderSize(r, 1<<20)
	for {
		line, err := br.ReadBytes(0)
		if err != nil {
			b.mu.Lock()
			for id, ch := range b.waiting {
				close(ch)
				delete(b.waiting, id)
			}
			b.mu.Unlock()
			return
		}
		var m cdpMessage
		if json.Unmarshal(line[:len(line)-1], &m) != nil {
			continue
		}
		if m.ID != 0 {
			b.mu.Lock()
			ch := b.waiting[m.ID]
			delete(b.waiting, m.ID)
			b.mu.Unlock()
			if ch != nil {
				ch <- m
			}
			continue
		}
		b.event(m)
	}
}

// event keeps what the pages print and throw, for failure messages.
func (b *cdpBrowser) event(m cdpMessage) {
	var line string
	switch m.Method {
	case "Runtime.consoleAPICalled":
		var p struct {
			Type string `json:"type"`
			Args []struct {
				Value       any    `json:"value"`
				Description string `json:"description"`
			} `json:"args"`
		}
		json.Unmarshal(m.Params, &p)
		var parts []string
		for _, a := range p.Args {
			if a.Value != nil {
				parts = append(parts, fmt.Sprint(a.Value))
			} else {
				parts = append(parts, a.Description)
			}
		}
		line = "console." + p.Type + ": " + strings.Join(parts, " ")
	case "Runtime.exceptionThrown":
		var p struct {
			Details struct {
				Text      string `json:"text"`
				Exception struct {
					Description string `json:"description"`
				} `json:"exception"`
			} `json:"exceptionDetails"`
		}
		json.Unmarshal(m.Params, &p)
		line = "exception: " + p.Details.Text + " " + p.Details.Exception.Description
	case "Log.entryAdded":
		var p struct {
			Entry struct {
				Level, Text, URL string
			} `json:"entry"`
		}
		json.Unmarshal(m.Params, &p)
		line = "log." + p.Entry.Level + ": " + p.Entry.Text + " " + p.Entry.URL
	default:
		return
	}
	b.mu.Lock()
	if len(b.logs) < 500 {
		b.logs = append(b.logs, line)
	}
	b.mu.Unlock()
}

func (b *cdpBrowser) consoleLogs() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.logs...)
}

// call sends one command and decodes its result into out.
func (b *cdpBrowser) call(ctx context.Context, session, method string, params, out any) error {
	b.mu.Lock()
	b.nextID++
	id := b.nextID
	ch := make(chan cdpMessage, 1)
	b.waiting[id] = ch
	b.mu.Unlock()
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	data, err := json.Marshal(msg)
	if err != nil {
		return err
	}
	b.wmu.Lock()
	_, err = b.w.Write(append(data, 0))
	b.wmu.Unlock()
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	select {
	case m, ok := <-ch:
		if !ok {
			return fmt.Errorf("%s: browser closed the pipe", method)
		}
		if m.Error != nil {
			return fmt.Errorf("%s: %s (%d)", method, m.Error.Message, m.Error.Code)
		}
		if out != nil {
			return json.Unmarshal(m.Result, out)
		}
		return nil
	case <-ctx.Done():
		b.mu.Lock()
		delete(b.waiting, id)
		b.mu.Unlock()
		return fmt.Errorf("%s: %w", method, ctx.Err())
	}
}

// cdpPage is one tab, attached with a flat session.
type cdpPage struct {
	b       *cdpBrowser
	t       testing.TB
	session string
}

// open creates a tab of width x height CSS pixels and loads url in it.
func (b *cdpBrowser) open(t testing.TB, url string, width, height int) *cdpPage {
	t.Helper()
	var target struct {
		TargetID string `json:"targetId"`
	}
	p := &cdpPage{b: b, t: t}
	p.must("", "Target.createTarget", map[string]any{"url": "about:blank"}, &target)
	var att struct {
		SessionID string `json:"sessionId"`
	}
	p.must("", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &att)
	p.session = att.SessionID
	p.must(p.session, "Runtime.enable", nil, nil)
	p.must(p.session, "Log.enable", nil, nil)
	p.must(p.session, "Page.enable", nil, nil)
	p.must(p.session, "Emulation.setDeviceMetricsOverride",
		map[string]any{"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}, nil)
	p.must(p.session, "Page.navigate", map[string]any{"url": url}, nil)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		b.call(ctx, "", "Target.closeTarget", map[string]any{"targetId": target.TargetID}, nil)
	})
	if strings.Contains(url, "/admin/") {
		// The page's script ran to its end (a syntax error would stop it).
		waitEval(p, "the admin page's script", `typeof window.gmsAdmin === 'object'`, func(ok bool) bool { return ok })
	}
	return p
}

func (p *cdpPage) must(session, method string, params, out any) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := p.b.call(ctx, session, method, params, out); err != nil {
		p.t.Fatal(err)
	}
}

// eval runs a JavaScript expression in the page and decodes its value.
func (p *cdpPage) eval(expr string, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text      string `json:"text"`
			Exception struct {
				Description string `json:"description"`
			} `json:"exception"`
		} `json:"exceptionDetails"`
	}
	err := p.b.call(ctx, p.session, "Runtime.evaluate",
		map[string]any{"expression": expr, "returnByValue": true, "awaitPromise": true}, &res)
	if err != nil {
		return err
	}
	if e := res.ExceptionDetails; e != nil {
		return fmt.Errorf("%s %s", e.Text, e.Exception.Description)
	}
	if len(res.Result.Value) == 0 {
		res.Result.Value = json.RawMessage("null")
	}
	return json.Unmarshal(res.Result.Value, out)
}

// waitEval evaluates expr (whose value decodes into *T) until cond holds;
// it fails the test with the last value after 20 s.
func waitEval[T any](p *cdpPage, what, expr string, cond func(T) bool) T {
	p.t.Helper()
	start := time.Now()
	deadline := start.Add(20 * time.Second)
	for {
		var v T
		err := p.eval(expr, &v)
		if err == nil && cond(v) {
			if d := time.Since(start); d > 3*time.Second {
				p.t.Logf("waited %v for %s", d.Round(time.Millisecond), what)
			}
			return v
		}
		if time.Now().After(deadline) {
			last, _ := json.Marshal(v)
			p.t.Fatalf("gave up waiting for %s: last value %s, error %v", what, last, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// screenshot saves the page as a PNG.
func (p *cdpPage) screenshot(path string) {
	p.t.Helper()
	var shot struct {
		Data string `json:"data"`
	}
	p.must(p.session, "Page.captureScreenshot", map[string]any{"format": "png"}, &shot)
	png, err := base64.StdEncoding.DecodeString(shot.Data)
	if err != nil {
		p.t.Fatal(err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// ---- publishing for the page ----

var (
	adminClipMu sync.Mutex
	adminClips  = map[string]string{}
)

// adminClip derives a clip from the test clip (copying streams, e.g. "-an"
// for video only) or, with encode set, encodes a new one from lavfi with
// the given codec options.
func adminClip(t testing.TB, name string, encode bool, args ...string) string {
	t.Helper()
	base := testClip(t)
	adminClipMu.Lock()
	defer adminClipMu.Unlock()
	if p, ok := adminClips[name]; ok {
		return p
	}
	out := filepath.Join(filepath.Dir(base), "admin-"+name+".flv")
	cmd := []string{"-hide_banner", "-loglevel", "error", "-y"}
	if encode {
		cmd = append(cmd, "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
			"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "4")
	} else {
		cmd = append(cmd, "-i", base, "-c", "copy")
	}
	cmd = append(append(cmd, args...), "-f", "flv", out)
	if msg, err := exec.Command("ffmpeg", cmd...).CombinedOutput(); err != nil {
		t.Fatalf("making clip %s: %v\n%s", name, err, msg)
	}
	adminClips[name] = out
	return out
}

// loopPublish publishes clip in a loop, in real time, until the test ends
// or the server kicks it.
func loopPublish(t testing.TB, clip, url string) {
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
		"-i", clip, "-c", "copy", "-f", "flv", url)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if t.Failed() && out.String() != "" {
			t.Logf("publisher %s: %s", url, out.String())
		}
	})
}

// ---- the tests ----

type adminRow struct {
	Name, Video, Audio, Bitrate, Viewers, Uptime string
	URLs                                         []string
}

const adminRowJS = `((key) => {
  const r = document.querySelector('tr[data-key="' + key + '"]');
  if (!r) return null;
  const c = r.children;
  return {name: c[0].textContent, video: c[1].textContent, audio: c[2].textContent,
    bitrate: r.querySelector('[data-field=bitrate]').textContent, viewers: c[4].textContent,
    uptime: r.querySelector('[data-field=uptime]').textContent,
    urls: [...r.querySelectorAll('code[data-proto]')].map((e) => e.textContent)};
})`

var bitrateRE = regexp.MustCompile(`^[1-9]\d*(\.\d+)? [kMG]?b/s$`) // not zero

// TestAdminStreams: while ffmpeg publishes, the page lists the stream with
// its codecs, a bitrate, its play URLs; shows server figures; logs a play
// event pushed over /api/events; and its kick button ends the stream.
func TestAdminStreams(t *testing.T) {
	clip := testClip(t)
	b := startChromium(t)
	ts := startServer(t, nil)
	key := streamKey{"live", "admin"}
	loopPublish(t, clip, ts.rtmpURL(key.Name))
	waitFor(t, "the publisher", func() bool { return ts.live(key) })

	p := b.open(t, "http://"+ts.httpAddr+"/admin/", 1280, 1000)
	row := waitEval(p, "the stream's row with H264 and a bitrate", adminRowJS+`("live/admin")`, func(r *adminRow) bool {
		return r != nil && strings.Contains(r.Video, "H264") && bitrateRE.MatchString(r.Bitrate)
	})
	t.Logf("row: %+v", *row)
	if !strings.Contains(row.Video, "320×240") || !strings.Contains(row.Audio, "AAC") {
		t.Errorf("row video %q audio %q; want H264 320×240 and AAC", row.Video, row.Audio)
	}
	_, rtmpPort, _ := net.SplitHostPort(ts.rtmpAddr)
	wantURLs := []string{"rtmp://127.0.0.1:" + rtmpPort + "/live/admin", "http://" + ts.httpAddr + "/live/admin.flv",
		"ws://" + ts.httpAddr + "/live/admin.flv", "http://" + ts.httpAddr + "/live/admin/index.m3u8"}
	if strings.Join(row.URLs, " ") != strings.Join(wantURLs, " ") {
		t.Errorf("play URLs %q; want %q", row.URLs, wantURLs)
	}

	// Server panel: figures from /api/server, the bandwidth once two
	// polls have given a rate.
	type cards struct{ CPU, Mem, Conn, BW, Note string }
	c := waitEval(p, "server figures", `({cpu: document.querySelector('#card-cpu .value').textContent,
	  mem: document.querySelector('#card-mem .value').textContent,
	  conn: document.querySelector('#card-conn .value').textContent,
	  bw: document.querySelector('#card-bw .value').textContent,
	  note: document.getElementById('server-note').textContent})`, func(c cards) bool {
		return strings.HasSuffix(c.CPU, "%") && strings.Contains(c.BW, "b/s")
	})
	t.Logf("server cards: %+v", c)
	// The page loads with nothing in the console: no error, no 404 for
	// /favicon.ico (the page names an empty data: icon).
	for _, line := range b.consoleLogs() {
		if strings.HasPrefix(line, "log.error") || strings.HasPrefix(line, "console.error") || strings.HasPrefix(line, "exception") {
			t.Errorf("browser console: %s", line)
		}
	}
	if strings.Contains(ts.logs.String(), "favicon") {
		t.Errorf("the browser asked for a favicon:\n%s", ts.logs.String())
	}

	// A viewer joins: /api/events pushes "play", which the page logs and
	// turns into a refresh; the row then counts one http viewer.
	waitEval(p, "the events stream", `document.getElementById('conn').textContent`, func(s string) bool {
		return s == "live updates"
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	viewerDone := make(chan struct{})
	go func() {
		httpGetFLV(ctx, ts.httpURL(key.Name))
		close(viewerDone)
	}()
	waitEval(p, "the play event", `document.getElementById('events').textContent`, func(s string) bool {
		return strings.Contains(s, "play") && strings.Contains(s, "/live/admin")
	})
	waitEval(p, "one http viewer", adminRowJS+`("live/admin")`, func(r *adminRow) bool {
		return r != nil && strings.Contains(r.Viewers, "http 1")
	})

	// Kick: the first click arms the button, the second sends the DELETE.
	var ok bool
	if err := p.eval(`(() => { const b = document.querySelector('tr[data-key="live/admin"] [data-action=kick]');
	  b.click(); b.click(); return true; })()`, &ok); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the publisher to be kicked", func() bool { return !ts.live(key) })
	waitEval(p, "the row to go", `document.querySelector('tr[data-key="live/admin"]') === null`, func(gone bool) bool { return gone })
	waitEval(p, "the kick event", `document.getElementById('events').textContent`, func(s string) bool {
		return strings.Contains(s, "kick") || strings.Contains(s, "unpublish")
	})
	cancel()
	<-viewerDone
}

type previewState struct {
	State, Tracks, Codecs, Message, Title string
	Frames                                int
	Time                                  float64
	AudioBytes                            int // Chromium's webkitAudioDecodedByteCount
	Behind                                float64
}

const previewJS = `(() => {
  const p = document.getElementById('preview'), v = document.getElementById('pv-video');
  const b = v.buffered;
  return {state: p.dataset.state || '', tracks: p.dataset.tracks || '', codecs: p.dataset.codecs || '',
    message: document.getElementById('pv-msg').textContent, title: document.title,
    frames: v.getVideoPlaybackQuality().totalVideoFrames, time: v.currentTime,
    audioBytes: v.webkitAudioDecodedByteCount || 0,
    behind: b.length ? b.end(b.length - 1) - v.currentTime : 0};
})()`

// TestAdminPreview: /admin/?preview=live/NAME plays the stream in the page
// (FLV remuxed to fragmented MP4 for Media Source Extensions): H.264+AAC,
// video only and audio only decode and advance; a Sorenson H.263 + ADPCM
// stream gets a clear message instead.
func TestAdminPreview(t *testing.T) {
	av := testClip(t)
	videoOnly := adminClip(t, "video", false, "-an")
	audioOnly := adminClip(t, "audio", false, "-vn")
	old := adminClip(t, "h263", true, "-c:v", "flv", "-c:a", "adpcm_swf", "-ar", "44100")
	b := startChromium(t)
	ts := startServer(t, nil)
	for name, clip := range map[string]string{"pv-av": av, "pv-video": videoOnly, "pv-audio": audioOnly, "pv-h263": old} {
		loopPublish(t, clip, ts.rtmpURL(name))
	}
	for _, name := range []string{"pv-av", "pv-video", "pv-audio", "pv-h263"} {
		waitFor(t, "publisher "+name, func() bool { return ts.live(streamKey{"live", name}) })
	}
	open := func(t *testing.T, name string) *cdpPage {
		return b.open(t, "http://"+ts.httpAddr+"/admin/?preview=live/"+name, 1280, 1500)
	}

	t.Run("h264+aac", func(t *testing.T) {
		p := open(t, "pv-av")
		s := waitEval(p, "decoded video and audio, time advancing", previewJS, func(s previewState) bool {
			return s.Frames > 10 && s.Time > 1.0 && s.AudioBytes > 0
		})
		t.Logf("preview: %+v", s)
		// The codecs string comes from the avcC (profile, constraints,
		// level) and the AudioSpecificConfig (object type 2: AAC LC).
		if s.Tracks != "video,audio" || !regexp.MustCompile(`^avc1\.[0-9a-f]{6}, mp4a\.40\.2$`).MatchString(s.Codecs) {
			t.Errorf("tracks %q codecs %q; want video,audio and avc1.PPCCLL, mp4a.40.2", s.Tracks, s.Codecs)
		}
		if !strings.Contains(s.Title, "frames=") {
			t.Errorf("title %q does not give the frame count", s.Title)
		}
		// The table and the server charts fill in too.
		waitEval(p, "the table and a bandwidth figure", `document.querySelectorAll('#streams tbody tr').length === 4 &&
		  /b\/s/.test(document.querySelector('#card-bw .value').textContent)`, func(ok bool) bool { return ok })

		// Live latency: put playback back at the start of the buffer,
		// more than 3 s behind the live edge; the page jumps forward.
		waitEval(p, "4 s buffered", `(() => { const b = document.getElementById('pv-video').buffered;
		  return b.length ? b.end(b.length - 1) - b.start(0) : 0; })()`, func(span float64) bool { return span > 4 })
		var behind float64
		if err := p.eval(`(() => { const v = document.getElementById('pv-video'), b = v.buffered;
		  v.currentTime = b.start(0); return b.end(b.length - 1) - b.start(0); })()`, &behind); err != nil {
			t.Fatal(err)
		}
		t.Logf("moved %.1f s behind the live edge", behind)
		s = waitEval(p, "a jump back near the live edge", previewJS, func(s previewState) bool {
			return s.Behind < 2 && s.State == "playing"
		})

		// Stop: the page closes its HTTP-FLV connection.
		key := streamKey{"live", "pv-av"}
		if ts.viewers(key) != 1 {
			t.Errorf("%d viewers of %s while previewing; want 1", ts.viewers(key), key)
		}
		var ok bool
		p.eval(`document.getElementById('pv-stop').click(), true`, &ok)
		waitFor(t, "the preview's connection to close", func() bool { return ts.viewers(key) == 0 })
		s = waitEval(p, "the panel to close", previewJS, func(s previewState) bool { return s.State == "stopped" })
	})

	t.Run("video only", func(t *testing.T) {
		p := open(t, "pv-video")
		s := waitEval(p, "decoded video, time advancing", previewJS, func(s previewState) bool {
			return s.Frames > 10 && s.Time > 1.0
		})
		if s.Tracks != "video" {
			t.Errorf("tracks %q; want video", s.Tracks)
		}
	})

	t.Run("audio only", func(t *testing.T) {
		p := open(t, "pv-audio")
		s := waitEval(p, "decoded audio, time advancing", previewJS, func(s previewState) bool {
			return s.Time > 1.0 && s.AudioBytes > 0
		})
		if s.Tracks != "audio" || s.Frames != 0 {
			t.Errorf("tracks %q, %d video frames; want audio and none", s.Tracks, s.Frames)
		}
	})

	t.Run("unsupported codecs", func(t *testing.T) {
		p := open(t, "pv-h263")
		s := waitEval(p, "a message", previewJS, func(s previewState) bool { return s.State == "unsupported" })
		if !strings.Contains(s.Message, "Sorenson H.263") || !strings.Contains(s.Message, "ADPCM") ||
			!strings.Contains(s.Message, "H.264") {
			t.Errorf("message %q; want it to name the stream's codecs and what preview plays", s.Message)
		}
	})
}

// TestAdminPageSelfContained: the page loads nothing from another origin
// and writes API strings as text, never as markup.
func TestAdminPageSelfContained(t *testing.T) {
	page := string(adminHTML)
	for _, bad := range []string{"<script src", "<link", "@import", "url(", "http://", "https://", "innerHTML",
		"outerHTML", "insertAdjacentHTML", "document.write"} {
		for _, line := range strings.Split(page, "\n") {
			if strings.Contains(line, bad) && !strings.Contains(line, "http://www.w3.org/2000/svg") &&
				line != `<link rel="icon" href="data:,">` { // an empty icon: no /favicon.ico request

				t.Errorf("admin.html has %q: %s", bad, strings.TrimSpace(line))
			}
		}
	}
	if !strings.Contains(page, "textContent") {
		t.Error("admin.html does not use textContent")
	}
}

// TestAdminOddAPI: the page copes with an older or odd server: missing and
// mistyped keys, no /api/server, no /api/events (404: it polls), and
// markup in names, which must show as text.
func TestAdminOddAPI(t *testing.T) {
	b := startChromium(t)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(adminHTML)
	})
	mux.HandleFunc("GET /api/streams", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"live":{"odd":{"publisher":{"video":"H264","audio":7,"bytes":"many","connectCreated":"yesterday"},
		  "subscribers":null},
		  "<img src=x onerror=alert(1)>":{"publisher":{"clientId":"<b>id</b>","ip":"<i>ip</i>",
		  "video":{"codec":"<script>x</script>","width":"wide"},"audio":null,"bitrateIn":12.5,"uptime":75},
		  "subscribers":[{"protocol":"ws"},{"protocol":"http"},{"protocol":"http"},null,3]},
		  "waiting":{"publisher":null,"subscribers":[{"protocol":"rtmp"}]},
		  "weird":5},
		 "num":3}`)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	p := b.open(t, srv.URL+"/admin/", 1280, 900)
	type row struct {
		Name, Video, Bitrate, Viewers, Uptime string
		Markup                                int
	}
	rows := waitEval(p, "three rows", `[...document.querySelectorAll('tbody tr')].map((r) => ({name: r.children[0].textContent,
	  video: r.children[1].textContent, bitrate: r.children[3].textContent, viewers: r.children[4].textContent,
	  uptime: r.children[5].textContent, markup: r.querySelectorAll('img, i, script, .name b').length}))`,
		func(rs []row) bool { return len(rs) == 3 })
	t.Logf("rows: %+v", rows)
	want := []struct{ name, video, bitrate, viewers, uptime string }{
		{"live/<img src=x onerror=alert(1)><i>ip</i> · rtmp · <b>id</b>", "<script>x</script>", "13 kb/s", "3rtmp 0http 2ws 1", "1m 15s"},
		{"live/odd", "—", "—", "0rtmp 0http 0ws 0", "—"},
		{"live/waitingwaiting for a publisher", "—", "—", "1rtmp 1http 0ws 0", "—"},
	}
	for i, w := range want {
		r := rows[i]
		if !strings.HasPrefix(r.Name, w.name) || !strings.HasPrefix(r.Video, w.video) || r.Bitrate != w.bitrate ||
			!strings.HasPrefix(r.Viewers, w.viewers) || !strings.HasPrefix(r.Uptime, w.uptime[:2]) || r.Markup != 0 {
			t.Errorf("row %d = %+v; want %+v and no markup", i, r, w)
		}
	}
	waitEval(p, "polling without /api/events", `document.getElementById('conn').textContent`, func(s string) bool {
		return s == "polling every 2 s"
	})
	waitEval(p, "no server figures", `document.getElementById('server-note').textContent + ' ' +
	  document.querySelector('#card-cpu .value').textContent`, func(s string) bool {
		return strings.Contains(s, "404") && strings.HasSuffix(s, "—")
	})
}

// loopERTMP publishes clip c's frames (testdata/codec) in Enhanced RTMP
// tags with frame type 0 everywhere, as MediaMTX sends them, with real
// Opus audio, in real time and looping, until the test ends. A track1
// clip goes along as track 1 in Multitrack OneTrack messages.
func loopERTMP(t *testing.T, ts *testServer, name string, c testClipFrames, track1 *testClipFrames) {
	opus := oggPackets(t, readTestdata(t, "opus.ogg"))
	pub := dialRTMP(t, ts.rtmpAddr, false)
	pub.connect("live")
	sid := pub.createStream()
	pub.command(sid, "publish", nil, name, "live")
	if code := pub.expectStatus(); code != "NetStream.Publish.Start" {
		t.Fatalf("publish %s: %s", name, code)
	}
	pub.nc.SetDeadline(time.Time{})
	send := func(typ uint8, ms uint32, payload []byte) error {
		csid := uint32(csidVideo)
		if typ == msgAudio {
			csid = csidAudio
		}
		_, err := pub.nc.Write(appendChunks(nil, csid, typ, sid, ms, payload, pub.chunkSize))
		return err
	}
	send(msgVideo, 0, exVideo(0, exSequenceStart, c.fourCC, c.config...))
	send(msgAudio, 0, joinBytes(bs(soundExHeader<<4|exSequenceStart), []byte("Opus"), opus[0]))
	multitrack := func(packetType byte, data []byte) []byte {
		return joinBytes(bs(0x80|exVideoMultitrack, multitrackOneTrack<<4|packetType), []byte(track1.fourCC), bs(1), data)
	}
	if track1 != nil {
		send(msgVideo, 0, multitrack(exSequenceStart, track1.config))
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		start := time.Now()
		audio := opus[2:]
		for k := 0; ; k++ { // an Opus packet every 20 ms, a video frame every 40 ms
			ms := uint32(k * 20)
			select {
			case <-stop:
				return
			case <-time.After(time.Until(start.Add(time.Duration(ms) * time.Millisecond))):
			}
			if send(msgAudio, ms, joinBytes(bs(soundExHeader<<4|exCodedFrames), []byte("Opus"), audio[k%len(audio)])) != nil {
				return
			}
			if k%2 == 0 && send(msgVideo, ms, exFrameBody(0, c.fourCC, c.frames[k/2%len(c.frames)])) != nil {
				return
			}
			if k%2 == 0 && track1 != nil && send(msgVideo, ms, multitrack(exCodedFramesX, track1.frames[k/2%len(track1.frames)])) != nil {
				return
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
	})
}

// TestAdminPreviewModernCodecs: the preview plays VP9 and AV1 with Opus
// (frame type 0 everywhere: the page finds the keyframes itself), when
// the browser says it can (MediaSource.isTypeSupported with the stream's
// codecs string); a codec it cannot decode (HEVC in Debian's Chromium) is
// named in a plain note while the audio plays. The table names each
// codec, and a multitrack stream's other track; the preview plays its
// main track.
func TestAdminPreviewModernCodecs(t *testing.T) {
	b := startChromium(t)
	ts := startServer(t, nil)
	clips := map[string]testClipFrames{}
	for _, c := range codecClips(t) {
		clips[c.fourCC] = c
	}
	av1 := clips["av01"]
	for _, tc := range []struct {
		name, fourCC, codec, label string
		track1                     *testClipFrames // a second video track (multitrack)
	}{
		{"pv-vp9", "vp09", "vp09.00.10.08", "VP9", &av1},
		{"pv-av1", "av01", "av01.0.00M.08", "AV1", nil},
		{"pv-hevc", "hvc1", "hvc1.1.6.L30.90", "HEVC", nil},
	} {
		t.Run(tc.label, func(t *testing.T) {
			loopERTMP(t, ts, tc.name, clips[tc.fourCC], tc.track1)
			waitFor(t, "publisher "+tc.name, func() bool { return ts.live(streamKey{"live", tc.name}) })
			p := b.open(t, "http://"+ts.httpAddr+"/admin/?preview=live/"+tc.name, 1280, 1000)
			// The table names the codec from its FourCC, with the size
			// gms read from its configuration record (VP9: its keyframe).
			waitEval(p, "the stream's row with "+tc.label+" 64×64", adminRowJS+`("live/`+tc.name+`")`, func(r *adminRow) bool {
				return r != nil && strings.Contains(r.Video, tc.label+" 64×64") && strings.Contains(r.Audio, "Opus 48 kHz") &&
					(tc.track1 == nil || strings.Contains(r.Video, "track 1: AV1 64×64"))
			})
			var supported bool
			if err := p.eval(`MediaSource.isTypeSupported('video/mp4; codecs="`+tc.codec+`"')`, &supported); err != nil {
				t.Fatal(err)
			}
			if supported {
				s := waitEval(p, "decoded video and audio, time advancing", previewJS, func(s previewState) bool {
					return s.Frames > 10 && s.Time > 1.0 && s.AudioBytes > 0
				})
				t.Logf("%s preview: %+v", tc.label, s)
				if s.Tracks != "video,audio" || s.Codecs != tc.codec+", opus" || s.Message != "" {
					t.Errorf("tracks %q codecs %q message %q; want video,audio and %s, opus, no message", s.Tracks, s.Codecs, s.Message, tc.codec)
				}
				return
			}
			want := "this browser cannot play " + tc.label + " video (" + tc.codec + ")"
			s := waitEval(p, "audio playing, and a note", previewJS, func(s previewState) bool {
				return s.Time > 1.0 && s.AudioBytes > 0 && strings.Contains(s.Message, "cannot play")
			})
			t.Logf("this Chromium cannot decode %s; the page says: %s", tc.codec, s.Message)
			if !strings.Contains(s.Message, want) || s.Tracks != "audio" {
				t.Errorf("message %q, tracks %q; want it to say %q, and the audio to play", s.Message, s.Tracks, want)
			}
		})
	}
}

type adminRelay struct {
	Mode, Stream, URL, State, Bytes, Errors, LastError string
	Stop                                               bool
}

const adminRelaysJS = `(!document.getElementById('relays-sec').checkVisibility() ? null :
  [...document.querySelectorAll('#relays tbody tr')].map((r) => ({mode: r.children[0].textContent,
    stream: r.children[1].textContent, url: r.children[2].textContent, state: r.children[3].textContent,
    bytes: r.children[4].textContent, errors: r.children[5].textContent, lastError: r.children[6].textContent,
    stop: r.querySelector('[data-action=stop-relay]').checkVisibility()})))`

type adminRecording struct {
	Stream, File, Size, Duration, Modified string
	Recording                              bool
}

const adminRecordingsJS = `(!document.getElementById('recordings-sec').checkVisibility() ? null :
  [...document.querySelectorAll('#recordings tbody tr')].map((r) => ({stream: r.children[0].textContent,
    file: r.dataset.file, size: r.children[2].textContent, duration: r.children[3].textContent,
    modified: r.children[4].textContent, recording: !!r.querySelector('.pill')})))`

// TestAdminRelaysRecordings: with a push to a dead target and -record,
// the page lists the push (its stream, the target, retrying with errors
// and the last error) and the file being recorded; the stream's play
// URLs include HLS; Chromium, which answers canPlayType for HLS too,
// still previews through Media Source Extensions unless ?via=hls; and the
// relay's stop button ends the push. Saves /tmp/admin.png (the README's
// testdata/admin.png).
func TestAdminRelaysRecordings(t *testing.T) {
	clip := testClip(t)
	b := startChromium(t)
	ts := startServer(t, func(c *config) {
		c.RelayPush = []string{"rtmp://127.0.0.1:1/live"} // nothing listens on port 1
		c.RecordDir = t.TempDir()
	})
	key := streamKey{"live", "relayed"}
	loopPublish(t, clip, ts.rtmpURL(key.Name))
	waitFor(t, "the publisher", func() bool { return ts.live(key) })
	p := b.open(t, "http://"+ts.httpAddr+"/admin/?preview=live/relayed", 1280, 1400)

	relays := waitEval(p, "the push retrying, with errors", adminRelaysJS, func(rs []adminRelay) bool {
		return len(rs) == 1 && rs[0].State == "retrying" && rs[0].Errors != "0" && rs[0].LastError != ""
	})
	t.Logf("relay: %+v", relays[0])
	if r := relays[0]; r.Mode != "push" || r.Stream != "live/relayed" || r.URL != "rtmp://127.0.0.1:1/live/relayed" ||
		r.Bytes != "0 B" || !strings.Contains(r.LastError, "127.0.0.1:1") || !r.Stop {
		t.Errorf("relay row %+v; want a push of live/relayed to rtmp://127.0.0.1:1/live/relayed, 0 B, its dial error and a stop button", r)
	}

	recs := waitEval(p, "the recording, growing", adminRecordingsJS, func(rs []adminRecording) bool {
		return len(rs) == 1 && rs[0].Recording && strings.HasSuffix(rs[0].Size, "KiB")
	})
	t.Logf("recording: %+v", recs[0])
	if r := recs[0]; r.Stream != "live/relayed" || !regexp.MustCompile(`^live/relayed/\d{4}(-\d\d){5}(-\d+)?\.flv$`).MatchString(r.File) {
		t.Errorf("recording row %+v; want live/relayed/<start time>.flv", r)
	}
	var errorsShown bool
	if err := p.eval(`document.getElementById('rec-errors').checkVisibility()`, &errorsShown); err != nil || errorsShown {
		t.Errorf("a record error count is shown (%v) with no errors", err)
	}

	row := waitEval(p, "the stream's row", adminRowJS+`("live/relayed")`, func(r *adminRow) bool { return r != nil })
	if want := "http://" + ts.httpAddr + "/live/relayed/index.m3u8"; len(row.URLs) != 4 || row.URLs[3] != want {
		t.Errorf("play URLs %q; want the fourth to be %s", row.URLs, want)
	}

	// The preview: HTTP-FLV into a MediaSource (a blob: URL), playing.
	type via struct {
		Via, Src string
		Frames   int
	}
	const viaJS = `({via: document.getElementById('preview').dataset.via || '', src: document.getElementById('pv-video').currentSrc,
	  frames: document.getElementById('pv-video').getVideoPlaybackQuality().totalVideoFrames})`
	v := waitEval(p, "the preview playing", viaJS, func(v via) bool { return v.Frames > 5 })
	if v.Via != "flv" || !strings.HasPrefix(v.Src, "blob:") {
		t.Errorf("preview via %q from %q; want flv from a blob: URL", v.Via, v.Src)
	}
	// The picture for the README (testdata/admin.png), once the server
	// charts have a bandwidth figure.
	waitEval(p, "a bandwidth figure", `/b\/s/.test(document.querySelector('#card-bw .value').textContent)`, func(ok bool) bool { return ok })
	p.screenshot("/tmp/admin.png")
	t.Log("screenshot: /tmp/admin.png")

	for _, line := range b.consoleLogs() {
		if strings.HasPrefix(line, "log.error") || strings.HasPrefix(line, "console.error") || strings.HasPrefix(line, "exception") {
			t.Errorf("browser console: %s", line)
		}
	}

	// Stop: the first click arms the button, the second sends the DELETE.
	var ok bool
	if err := p.eval(`(() => { const b = document.querySelector('#relays [data-action=stop-relay]');
	  b.click(); b.click(); return true; })()`, &ok); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the push to stop", func() bool { return len(ts.relays.list()) == 0 })
	waitEval(p, "the relays panel to hide", `document.getElementById('relays-sec').checkVisibility()`, func(seen bool) bool { return !seen })
	if !ts.live(key) {
		t.Error("stopping the push ended the publish")
	}

	// ?via=hls: the browser's own HLS player (Chromium 156 has one too) on
	// the stream's playlist. Whether it plays is left to the HLS tests:
	// Chromium's native HLS, still young, fails now and then on a playlist
	// that hls.js plays (DEMUXER_ERROR_COULD_NOT_PARSE).
	p2 := b.open(t, "http://"+ts.httpAddr+"/admin/?preview=live/relayed&via=hls", 1280, 1000)
	waitEval(p2, "the preview on the HLS playlist", viaJS, func(v via) bool {
		return v.Via == "hls" && strings.HasSuffix(v.Src, "/live/relayed/index.m3u8")
	})
}

// TestAdminRelaysMarkup: relay and recording texts from the server (URLs,
// errors, file names) are shown as text, odd entries are skipped, the
// record error count shows, and a refused stop says why.
func TestAdminRelaysMarkup(t *testing.T) {
	b := startChromium(t)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(adminHTML)
	})
	answer := func(body string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, body)
		}
	}
	mux.HandleFunc("GET /api/streams", answer(`{}`))
	mux.HandleFunc("GET /api/server", answer(`{"record":true}`))
	mux.HandleFunc("GET /api/events", func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) })
	mux.HandleFunc("GET /api/relay", answer(`{"live":{"a":{"relays":[
	  {"app":"live","name":"a","mode":"pull","url":"rtmp://<b>origin</b>/live/a","state":"live","bytes":2048,"errors":0,"id":"R1"},
	  {"app":"live","name":"a","mode":"push","url":"rtmp://x/<img src=x onerror=alert(1)>","state":"retrying","bytes":0,"errors":3,
	   "lastError":"<script>alert(1)</script> refused","id":"R2"},
	  5, null]}, "b": 7}, "x": null}`))
	mux.HandleFunc("DELETE /api/relay/{id}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"error":"changing state needs -api-user and -api-pass, or a request from this machine"}`)
	})
	mux.HandleFunc("GET /api/recordings", answer(`{"recordings":[
	  {"app":"live","stream":"old","file":"live/old/1.flv","size":1048576,"duration":61.5,"modified":"2026-12-05T10:00:00Z","recording":false},
	  {"app":"live","stream":"new","file":"live/new/<i>2</i>.flv","size":"big","duration":null,"modified":"2026-12-05T11:00:00Z","recording":true},
	  "junk"],"errors":2}`))
	srv := httptest.NewServer(mux)
	defer srv.Close()

	p := b.open(t, srv.URL+"/admin/", 1280, 900)
	relays := waitEval(p, "two relays", adminRelaysJS, func(rs []adminRelay) bool { return len(rs) == 2 })
	t.Logf("relays: %+v", relays)
	want := []adminRelay{
		{"pull", "live/a", "rtmp://<b>origin</b>/live/a", "live", "2 KiB", "0", "", true},
		{"push", "live/a", "rtmp://x/<img src=x onerror=alert(1)>", "retrying", "0 B", "3", "<script>alert(1)</script> refused", true},
	}
	for i, w := range want {
		if relays[i] != w {
			t.Errorf("relay %d = %+v; want %+v", i, relays[i], w)
		}
	}
	recs := waitEval(p, "two recordings", adminRecordingsJS, func(rs []adminRecording) bool { return len(rs) == 2 })
	t.Logf("recordings: %+v", recs)
	if r := recs[0]; r.Stream != "live/new" || r.File != "live/new/<i>2</i>.flv" || !r.Recording || r.Size != "—" || r.Duration != "—" {
		t.Errorf("newest recording %+v; want live/new, its file name as text, recording, no size or duration", r)
	}
	if r := recs[1]; r.Stream != "live/old" || r.Size != "1 MiB" || r.Duration != "1m 01s" || r.Recording {
		t.Errorf("older recording %+v; want live/old, 1 MiB, 1m 01s", r)
	}
	var markup int
	if err := p.eval(`document.querySelectorAll('#relays b, #relays img, #relays script, #recordings i').length`, &markup); err != nil || markup != 0 {
		t.Errorf("%d elements made from server text (%v); want none", markup, err)
	}
	waitEval(p, "the error count", `document.getElementById('rec-errors').checkVisibility() ? document.getElementById('rec-errors').textContent : ''`,
		func(s string) bool { return s == "2 errors" })

	// A refused stop: the toast gives the server's reason.
	var ok bool
	if err := p.eval(`(() => { const b = document.querySelector('#relays tr[data-relay=R2] [data-action=stop-relay]');
	  b.click(); b.click(); return true; })()`, &ok); err != nil {
		t.Fatal(err)
	}
	waitEval(p, "the refusal", `document.getElementById('toast').textContent`, func(s string) bool {
		return strings.Contains(s, "Stop relay live/a: changing state needs -api-user")
	})
}
