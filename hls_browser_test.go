package main

// HLS in a browser: hls.js (npm) in headless Chromium plays a live
// stream over LL-HLS and over plain HLS, from a page of another origin.

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const hlsPage = `<!doctype html><meta charset="utf-8"><body>
<video id="ll" muted></video><video id="plain" muted></video>
<script src="/hls.js"></script>
<script>
const report = m => fetch('/result', {method: 'POST', body: m});
const watchFor = Number(new URLSearchParams(location.search).get('seconds'));
function play(id, url, lowLatency) {
  const v = document.getElementById(id);
  const hls = new Hls({lowLatencyMode: lowLatency});
  hls.on(Hls.Events.ERROR, (e, d) => { if (d.fatal) report(id + ' error ' + d.type + ' ' + d.details); });
  hls.loadSource(url);
  hls.attachMedia(v);
  v.play().catch(e => report(id + ' error play(): ' + e));
  let started = 0, latencies = [];
  const timer = setInterval(() => {
    if (v.error) {
      clearInterval(timer);
      report(id + ' error media: ' + v.error.code + ' ' + v.error.message);
      return;
    }
    if (v.currentTime > 0 && !started) started = performance.now();
    if (started && hls.latency > 0) latencies.push(hls.latency);
    if (started && performance.now() - started > watchFor * 1000) {
      clearInterval(timer);
      latencies.sort((a, b) => a - b);
      const q = v.getVideoPlaybackQuality();
      report(id + ' ok frames=' + q.totalVideoFrames + ' size=' + v.videoWidth + 'x' + v.videoHeight +
        ' played=' + v.currentTime.toFixed(2) + ' latency=' + latencies[latencies.length >> 1].toFixed(3) +
        ' target=' + hls.targetLatency.toFixed(3) + ' stalls=' + stalls);
    }
  }, 100);
  let stalls = 0;
  v.addEventListener('waiting', () => { if (started) stalls++; });
}
if (!window.Hls || !Hls.isSupported()) report('page error: hls.js did not load, or no MSE');
else {
  const q = new URLSearchParams(location.search);
  play('ll', q.get('url'), true);
  // The plain player comes later, as a second viewer does: the first
  // viewer's request starts the muxing, so its playlist has no backlog
  // yet, and plain HLS starts three segments back.
  setTimeout(() => play('plain', q.get('url'), false), 6000);
}
</script>`

// TestChromiumHLSJS plays a live H.264 + AAC stream with hls.js in
// headless Chromium, in low-latency mode (parts, blocking reloads,
// preload hints) from the request that starts the muxing, and without
// (6 s later, as a second viewer), for 8 s each after the first frame: each
// must decode at 320x240 with no player or media error and play on
// (currentTime advancing, at most a stall). hls.js's own latency
// estimate is logged (median of its samples), and the low-latency one
// must beat the plain one. Then the same for AV1 + Opus (a stream `gms
// push` sends as Enhanced RTMP), which Chromium decodes. hls.js comes
// from npm: GMS_HLS_JS names its dist/hls.min.js.
func TestChromiumHLSJS(t *testing.T) {
	js := npmFile(t, "GMS_HLS_JS", "hls.js")
	ts := startServer(t, nil)
	t.Run("h264", func(t *testing.T) {
		key := streamKey{"live", "hlsjs"}
		longPublish(t, ts.rtmpURL(key.Name))
		waitFor(t, "the publisher", func() bool { return ts.live(key) })
		playHLSJS(t, js, ts, key)
	})
	t.Run("av1", func(t *testing.T) {
		clip := modernClip(t, "av1opus", "-c:v", "libaom-av1", "-usage", "realtime", "-cpu-used", "8",
			"-c:a", "libopus", "-b:a", "64k", "-ac", "2")
		key := streamKey{"live", "hlsav1"}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan struct{})
		go func() {
			defer close(done)
			runCmd(ctx, "push", "-loop", "0", clip, ts.rtmpURL(key.Name))
		}()
		defer func() { cancel(); <-done }()
		waitFor(t, "the publisher", func() bool { return ts.live(key) })
		playHLSJS(t, js, ts, key)
	})
	t.Run("mp3", func(t *testing.T) {
		// H.264 + MP3, what FFmpeg's FLV muxer sends by default: an mp4a
		// track of objectTypeIndication 0x6B (fmp4.go).
		clip := modernClip(t, "h264mp3", "-c:v", "libx264", "-preset", "ultrafast", "-c:a", "libmp3lame", "-ac", "2")
		key := streamKey{"live", "hlsmp3"}
		cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", clip,
			"-c", "copy", "-f", "flv", ts.rtmpURL(key.Name))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		defer func() { cmd.Process.Kill(); cmd.Wait() }()
		waitFor(t, "the publisher", func() bool { return ts.live(key) })
		playHLSJS(t, js, ts, key)
	})
}

// playHLSJS opens hlsPage on key's playlist and checks both players.
func playHLSJS(t *testing.T, js string, ts *testServer, key streamKey) {
	const watch = 8
	br := openPage(t, hlsPage, map[string]string{"/hls.js": js},
		fmt.Sprintf("seconds=%d&url=http://%s/%s/%s/index.m3u8", watch, ts.httpAddr, key.App, key.Name))
	got := map[string]string{}
	for len(got) < 2 {
		r := br.next(t, 60*time.Second)
		name, rest, _ := strings.Cut(r, " ")
		if name != "ll" && name != "plain" {
			t.Fatalf("browser: %s", r)
		}
		got[name] = rest
	}
	latency := map[string]float64{}
	for _, name := range []string{"ll", "plain"} {
		var frames, w, h, stalls int
		var played, lat, target float64
		_, err := fmt.Sscanf(got[name], "ok frames=%d size=%dx%d played=%f latency=%f target=%f stalls=%d", &frames, &w, &h, &played, &lat, &target, &stalls)
		if err != nil || frames < 25*watch*8/10 || w != 320 || h != 240 || stalls > 1 {
			t.Errorf("%s player: %q; want ok, %d+ frames at 320x240, at most a stall", name, got[name], 25*watch*8/10)
		}
		latency[name] = lat
		// latency: the median of hls.js's estimates, the live edge (the
		// playlist's end plus its age) less currentTime; target: what
		// hls.js aims at, PART-HOLD-BACK in low-latency mode.
		t.Logf("hls.js %s %s: latency p50 %.3f s (target %.3f s), %d frames, %d stalls", key.Name, name, lat, target, frames, stalls)
	}
	if latency["ll"] >= latency["plain"] {
		t.Errorf("low-latency mode's latency %.3f s is not below plain HLS's %.3f s", latency["ll"], latency["plain"])
	}
}

// TestChromiumHLSJSRepublish: a publisher leaves and another comes back
// on the name at another size and frame rate (320x240 at 25 fps, then
// 640x360 at 30): hls.js in low-latency mode, which watched the first,
// and in plain mode, which joins during the first, both play on through
// the EXT-X-DISCONTINUITY and the new init segment to the second's size,
// with no fatal error. Before, a playlist that listed parts between the
// two publishes made hls.js fail its merge with the next one
// ("discontinuity sequence mismatch (0!=1)", levelParsingError).
func TestChromiumHLSJSRepublish(t *testing.T) {
	needFFmpeg(t)
	js := npmFile(t, "GMS_HLS_JS", "hls.js")
	ts := startServer(t, nil)
	dir := t.TempDir()
	var clips []string
	for _, c := range []struct{ size, rate string }{{"320x240", "25"}, {"640x360", "30"}} {
		clip := filepath.Join(dir, c.size+".flv")
		out, err := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error",
			"-f", "lavfi", "-i", "testsrc2=size="+c.size+":rate="+c.rate, "-f", "lavfi", "-i", "sine=sample_rate=48000",
			"-t", "8", "-c:v", "libx264", "-preset", "ultrafast", "-g", c.rate, "-pix_fmt", "yuv420p",
			"-c:a", "aac", "-f", "flv", clip).CombinedOutput()
		if err != nil {
			t.Fatalf("making the %s clip: %v\n%s", c.size, err, out)
		}
		clips = append(clips, clip)
	}
	key := streamKey{"live", "hlsrepublish"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := publish(t, ctx, clips[0], ts.rtmpURL(key.Name))
		if err == nil {
			err = publish(t, ctx, clips[1], ts.rtmpURL(key.Name))
		}
		done <- err
	}()
	defer func() { cancel(); <-done }()
	waitFor(t, "the publisher", func() bool { return ts.live(key) })
	// Each player reports 12 s after its first frame: well into the
	// second publish (the first lasts 8 s; the plain player starts 6 s in).
	page := strings.Replace(hlsPage, "d.type + ' ' + d.details", "d.type + ' ' + d.details + ' ' + d.reason", 1)
	br := openPage(t, page, map[string]string{"/hls.js": js},
		fmt.Sprintf("seconds=12&url=http://%s/%s/%s/index.m3u8", ts.httpAddr, key.App, key.Name))
	for range 2 {
		r := br.next(t, 60*time.Second)
		t.Logf("hls.js %s", r)
		if name, rest, _ := strings.Cut(r, " "); (name != "ll" && name != "plain") || !strings.HasPrefix(rest, "ok ") ||
			!strings.Contains(rest, " size=640x360 ") {
			t.Errorf("browser: %s; want each player ok at 640x360", r)
		}
	}
}
