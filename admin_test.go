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
// stream gets a clear message instead. Saves /tmp/admin.png.
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
		// The table and the server charts fill in too; then a picture.
		waitEval(p, "the table and a bandwidth figure", `document.querySelectorAll('tbody tr').length === 4 &&
		  /b\/s/.test(document.querySelector('#card-bw .value').textContent)`, func(ok bool) bool { return ok })
		p.screenshot("/tmp/admin.png")
		t.Log("screenshot: /tmp/admin.png")

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
			if strings.Contains(line, bad) && !strings.Contains(line, "http://www.w3.org/2000/svg") {
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
