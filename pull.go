package main

// `gms pull [flags] URL FILE`: play a stream over RTMP(S) or HTTP(S)-FLV
// and write it to an FLV file that starts cleanly: header, metadata,
// sequence headers, then frames from a keyframe on.

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	neturl "net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"
)

func pullUsage(fs *flag.FlagSet, out io.Writer) func() {
	return func() {
		fmt.Fprintln(out, "usage: gms pull [flags] URL FILE\n"+
			"Records a live stream (rtmp://, rtmps://, http(s)://.../NAME.flv) to an FLV file.")
		fs.PrintDefaults()
	}
}

// runPull is `gms pull`: it returns nil when the stream ended, -t was
// reached or Ctrl-C stopped it, with the file closed cleanly.
func runPull(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("gms pull", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = pullUsage(fs, stderr)
	duration := fs.Duration("t", 0, "stop after this `duration` of media (0 = until the stream ends)")
	var client rtmpClientOptions
	fs.DurationVar(&client.Timeout, "timeout", clientTimeout, "`duration` to wait for the server to connect and answer")
	insecure := fs.Bool("insecure", false, "rtmps, https: do not verify the server's certificate")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return errors.New("pull needs URL and FILE")
	}
	if *insecure {
		client.TLS = &tls.Config{InsecureSkipVerify: true}
	}
	prog := newProgress(stderr, "PULLING")
	log := slog.New(slog.NewTextHandler(prog, nil))
	client.Log = log
	url, path := fs.Arg(0), fs.Arg(1)

	src, closeSrc, err := openStream(ctx, url, client)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	defer closeSrc()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	rec := newFLVRecorder(f)
	log.Info("pulling", "url", redactStreamURL(url), "file", path)
	err = pullInto(ctx, src, rec, prog, *duration)
	if cerr := rec.close(); err == nil {
		err = cerr
	}
	prog.summary("pull")
	if err == nil && prog.frames() == 0 {
		err = fmt.Errorf("%s: the stream ended before any media arrived", redactStreamURL(url))
	}
	return err
}

// pullInto copies tags until the source ends, -t or ctx.
func pullInto(ctx context.Context, src tagSource, rec *flvRecorder, prog *progress, limit time.Duration) error {
	var start uint32
	started := false
	for {
		tag, err := src.next()
		if err == io.EOF || ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return err
		}
		if limit > 0 && started && tag.Type != tagScript &&
			time.Duration(int64(tag.Time)-int64(start))*time.Millisecond >= limit {
			return nil
		}
		wrote, err := rec.add(tag)
		if err != nil {
			return err
		}
		if wrote && tag.Type != tagScript {
			if !started {
				start, started = tag.Time, true
			}
			prog.count(tag)
			prog.update()
		}
	}
}

// openStream plays a URL: RTMP(S) as a client, HTTP(S) as HTTP-FLV.
func openStream(ctx context.Context, url string, opt rtmpClientOptions) (tagSource, func(), error) {
	scheme, _, _ := strings.Cut(url, "://")
	switch strings.ToLower(scheme) {
	case "rtmp", "rtmps":
		c, err := dialRTMPClient(ctx, url, false, opt)
		if err != nil {
			return nil, nil, err
		}
		if err := c.play(); err != nil {
			c.close()
			return nil, nil, err
		}
		// The end of ctx (Ctrl-C) ends the play at once.
		stop := context.AfterFunc(ctx, func() { c.nc.Close() })
		return c, func() { stop(); c.close() }, nil
	case "http", "https":
		return openHTTPFLV(ctx, url, opt)
	}
	return nil, nil, fmt.Errorf("pull: %q: want rtmp://, rtmps://, http:// or https://", redactStreamURL(url))
}

func openHTTPFLV(ctx context.Context, url string, opt rtmpClientOptions) (tagSource, func(), error) {
	// A server silent for clientIdleTimeout ends the pull, as over RTMP.
	ctx, cancel := context.WithCancel(ctx)
	idle := &idleReader{}
	idle.timer = time.AfterFunc(clientIdleTimeout, func() { idle.fired.Store(true); cancel() })
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("pull: %w", redactURLError(err))
	}
	timeout := opt.Timeout
	if timeout <= 0 {
		timeout = clientTimeout
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = opt.TLS
	tr.ResponseHeaderTimeout = timeout
	client := &http.Client{Transport: tr}
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		return nil, nil, fmt.Errorf("pull: %w", redactURLError(err))
	}
	closeAll := func() { idle.timer.Stop(); cancel(); resp.Body.Close(); tr.CloseIdleConnections() }
	if resp.StatusCode != http.StatusOK {
		closeAll()
		return nil, nil, fmt.Errorf("pull: %s answered %s", redactStreamURL(url), resp.Status)
	}
	idle.r = resp.Body
	src, err := newFLVFileSource(idle, "HTTP-FLV stream")
	if err != nil {
		closeAll()
		if errors.Is(err, io.EOF) {
			return nil, nil, fmt.Errorf("pull: %s: the stream ended before any media arrived", redactStreamURL(url))
		}
		return nil, nil, err
	}
	return src, closeAll, nil
}

// idleReader restarts its timer at every read that brings bytes.
type idleReader struct {
	r     io.Reader
	timer *time.Timer
	fired atomic.Bool
}

func (ir *idleReader) Read(p []byte) (int, error) {
	n, err := ir.r.Read(p)
	if n > 0 {
		ir.timer.Reset(clientIdleTimeout)
	}
	if err != nil && ir.fired.Load() {
		err = fmt.Errorf("no data for %s", clientIdleTimeout)
	}
	return n, err
}

// redactStreamURL hides credentials in a URL for logs and errors: those
// in its query, and a user and password before its host.
func redactStreamURL(url string) string {
	base, query, ok := strings.Cut(url, "?")
	if scheme, rest, found := strings.Cut(base, "://"); found {
		host, path, _ := strings.Cut(rest, "/")
		if i := strings.LastIndexByte(host, '@'); i >= 0 {
			base = scheme + "://" + host[i+1:]
			if path != "" || strings.HasSuffix(rest, "/") {
				base += "/" + path
			}
		}
	}
	if !ok {
		return base
	}
	return base + "?" + redactQuery(query)
}

// redactURLError is err with the URL that net/http quotes in it
// (Get "http://host/live/cam.flv?key=...": ...) redacted.
func redactURLError(err error) error {
	var ue *neturl.Error
	if errors.As(err, &ue) {
		return fmt.Errorf("%s %q: %w", ue.Op, redactStreamURL(ue.URL), ue.Err)
	}
	return err
}

// flvRecorder writes a played stream to an FLV file. Until the first
// video keyframe (or, without video, the first audio frame) it only keeps
// the latest metadata and sequence headers; then it writes the header,
// the metadata, the audio and video headers and the frame, so that the
// file starts the way players want. At close the header's audio and
// video flags are set to what the file holds.
type flvRecorder struct {
	f   *os.File
	w   *bufio.Writer
	buf []byte

	started                bool
	held                   []flvTag // metadata and sequence headers before the start, in their order
	expectVideo            bool     // metadata or a header says the stream has video
	wroteAudio, wroteVideo bool
	// codecs finds keyframes and headers as the server does: from the
	// bitstream when a publisher leaves frame types unmarked.
	codecs codecState
}

func newFLVRecorder(f *os.File) *flvRecorder {
	return &flvRecorder{f: f, w: bufio.NewWriterSize(f, 256<<10)}
}

// add takes one tag; wrote says whether it went into the file.
func (r *flvRecorder) add(tag flvTag) (wrote bool, err error) {
	switch tag.Type {
	case tagScript:
		payload, meta, ok := parseMetadata(tag.Data)
		if !ok {
			return false, nil
		}
		if name, _, err := amf0Decode(payload); err == nil && name == "|RtmpSampleAccess" {
			return false, nil // a server's note to Flash players, not the stream's
		}
		if meta != nil && meta.hasVideo {
			r.expectVideo = true
		}
		tag.Data = payload
		if !r.started {
			r.hold(tag)
			return false, nil
		}
	case tagAudio:
		if !r.started {
			if r.codecs.classifyAudio(tag.Data).header {
				r.hold(tag)
				return false, nil
			}
			if r.expectVideo {
				return false, nil // the file starts at a video keyframe
			}
			return true, r.start(tag)
		}
	case tagVideo:
		r.expectVideo = true
		if !r.started {
			class := r.codecs.classifyVideo(tag.Data)
			switch {
			case class.header:
				r.hold(tag)
				return false, nil
			case !class.key:
				return false, nil
			}
			return true, r.start(tag)
		}
	default:
		return false, nil
	}
	return true, r.write(tag)
}

// hold keeps a metadata or header tag until the start, replacing an
// earlier one of its type.
func (r *flvRecorder) hold(tag flvTag) {
	tag.Data = append([]byte(nil), tag.Data...)
	for i := range r.held {
		if r.held[i].Type == tag.Type {
			r.held[i] = tag
			return
		}
	}
	r.held = append(r.held, tag)
}

// start writes the file's header, what was kept, and the first frame.
// Kept tags get no later a time than the frame's, so time never goes back.
func (r *flvRecorder) start(first flvTag) error {
	r.started = true
	// The flags are provisional: close sets them to what was written.
	if _, err := r.w.Write(appendFLVHeader(nil, true, true)); err != nil {
		return err
	}
	for _, kept := range r.held {
		kept.Time = min(kept.Time, first.Time)
		if err := r.write(kept); err != nil {
			return err
		}
	}
	r.held = nil
	return r.write(first)
}

func (r *flvRecorder) write(tag flvTag) error {
	switch tag.Type {
	case tagScript:
		// ffmpeg's FLV reader takes onMetaData for the file's metadata only
		// at time 0; at any other time it makes it a packet of a data
		// stream ("text"), which a pull joined mid-stream always had.
		tag.Time = 0
	case tagAudio:
		r.wroteAudio = true
	case tagVideo:
		r.wroteVideo = true
	}
	r.buf = appendFLVTag(r.buf[:0], tag.Type, tag.Time, tag.Data)
	_, err := r.w.Write(r.buf)
	return err
}

// close flushes the file and sets the header's flags (§E.2
// TypeFlagsAudio, TypeFlagsVideo) to the tracks it holds. A file that
// never started is removed: it would hold nothing.
func (r *flvRecorder) close() error {
	if !r.started {
		name := r.f.Name()
		r.f.Close()
		os.Remove(name)
		return nil
	}
	err := r.w.Flush()
	var flags byte
	if r.wroteAudio {
		flags |= 0x04
	}
	if r.wroteVideo {
		flags |= 0x01
	}
	if _, werr := r.f.WriteAt([]byte{flags}, 4); err == nil {
		err = werr
	}
	if cerr := r.f.Close(); err == nil {
		err = cerr
	}
	return err
}
