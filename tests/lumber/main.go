// Command lumber-server is a Lumberjack v2 (Beats protocol) test peer built on
// Elastic's go-lumber server (github.com/elastic/go-lumber/server/v2).
//
// It writes every received event as one JSON line
//
//	{"conn": N, "batch": N, "event": <event>}
//
// to -out (default stdout) and acknowledges batches according to its mode.
// Control lines go to stdout: "LUMBER_READY <port>" once listening and
// "LUMBER_MODE <mode>" each time a mode has been applied.
//
// Modes (initial one from -mode, later ones as lines on stdin):
//
//	ack            acknowledge every batch (go-lumber sends ACK <count>)
//	stall          hold batches without ACK; go-lumber sends keepalive ACK 0
//	               every -keepalive; leaving stall ACKs all held batches
//	drop-after N   emit the first N events of each batch, close the
//	               connection without ACK
//	partial N      emit the first N events, write a raw ACK N on the
//	               connection, then close it
//
// EOF on stdin (or SIGINT/SIGTERM) stops the server, so a test harness that
// dies never leaves it behind.
package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	stdlog "log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/elastic/go-lumber/lj"
	protocol "github.com/elastic/go-lumber/protocol/v2"
	server "github.com/elastic/go-lumber/server/v2"
)

type mode struct {
	kind string // ack | stall | drop-after | partial
	n    int
}

func (m mode) String() string {
	if m.kind == "drop-after" || m.kind == "partial" {
		return fmt.Sprintf("%s %d", m.kind, m.n)
	}
	return m.kind
}

func parseMode(s string) (mode, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return mode{}, errors.New("empty mode")
	}
	switch f[0] {
	case "ack", "stall":
		if len(f) == 1 {
			return mode{kind: f[0]}, nil
		}
	case "drop-after", "partial":
		if len(f) == 2 {
			n, err := strconv.Atoi(f[1])
			if err == nil && n >= 0 {
				return mode{kind: f[0], n: n}, nil
			}
		}
	}
	return mode{}, fmt.Errorf("bad mode %q", s)
}

// conns maps a connection's remote address (which go-lumber copies into
// lj.Batch.RemoteAddr) to the connection and its number. go-lumber's
// high-level API cannot close one connection or send a partial ACK, so the
// fault modes act on the net.Conn directly.
type conns struct {
	mu     sync.Mutex
	next   int
	byAddr map[string]*tracked
}

type tracked struct {
	id      int
	conn    net.Conn
	batches int
}

func (c *conns) add(conn net.Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next++
	c.byAddr[conn.RemoteAddr().String()] = &tracked{id: c.next, conn: conn}
}

func (c *conns) get(addr string) *tracked {
	c.mu.Lock()
	defer c.mu.Unlock()
	if t, ok := c.byAddr[addr]; ok {
		return t
	}
	return &tracked{} // unknown connection: id 0, never closed
}

// trackingListener registers every accepted connection; it is the outermost
// listener so it sees the *tls.Conn and raw ACK writes go through TLS.
type trackingListener struct {
	net.Listener
	reg *conns
}

func (l trackingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.reg.add(c)
	}
	return c, err
}

// rawDecoder keeps each event's bytes (compacted to one line) instead of
// decoding into interface{}: the output then shows exactly what the client
// sent, with no float64 rounding of big integers. It still rejects invalid
// JSON, as the default decoder would.
func rawDecoder(data []byte, v interface{}) error {
	var buf bytes.Buffer
	if err := json.Compact(&buf, data); err != nil {
		return err
	}
	*(v.(*interface{})) = json.RawMessage(buf.Bytes())
	return nil
}

func tlsConfig(cert, key, ca string, requireClientCert bool) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate in %s", ca)
		}
		cfg.ClientCAs = pool
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	if requireClientCert {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg, nil
}

type app struct {
	reg  *conns
	out  *bufio.Writer
	mode mode
	held []*lj.Batch
}

func (a *app) emit(t *tracked, events []interface{}) {
	line := make([]byte, 0, 512)
	for _, ev := range events {
		raw, _ := ev.(json.RawMessage)
		line = append(line[:0], `{"conn":`...)
		line = strconv.AppendInt(line, int64(t.id), 10)
		line = append(line, `,"batch":`...)
		line = strconv.AppendInt(line, int64(t.batches), 10)
		line = append(line, `,"event":`...)
		line = append(line, raw...)
		line = append(line, "}\n"...)
		_, _ = a.out.Write(line)
	}
	// Flush before any ACK so a client that saw the ACK finds its events in -out.
	if err := a.out.Flush(); err != nil {
		stdlog.Fatalf("write events: %v", err)
	}
}

func (a *app) onBatch(b *lj.Batch) {
	t := a.reg.get(b.RemoteAddr)
	t.batches++
	switch a.mode.kind {
	case "ack":
		a.emit(t, b.Events)
		b.ACK()
	case "stall":
		a.emit(t, b.Events)
		a.held = append(a.held, b)
	case "drop-after", "partial":
		n := min(a.mode.n, len(b.Events))
		a.emit(t, b.Events[:n])
		if a.mode.kind == "partial" && t.conn != nil {
			var ack [6]byte
			ack[0], ack[1] = protocol.CodeVersion, protocol.CodeACK
			binary.BigEndian.PutUint32(ack[2:], uint32(n))
			_ = t.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			_, _ = t.conn.Write(ack[:])
		}
		if t.conn != nil {
			_ = t.conn.Close() // go-lumber's handler then stops; the batch is never ACKed
		}
	}
}

func (a *app) setMode(m mode) {
	a.mode = m
	if m.kind != "stall" {
		for _, b := range a.held {
			b.ACK()
		}
		a.held = nil
	}
	fmt.Printf("LUMBER_MODE %s\n", m)
}

func main() {
	port := flag.Int("port", 0, "TCP port on 127.0.0.1 (0 = pick a free one)")
	outPath := flag.String("out", "", "file for event lines (default stdout)")
	modeFlag := flag.String("mode", "ack", `initial mode: ack | stall | "drop-after N" | "partial N"`)
	keepalive := flag.Duration("keepalive", 3*time.Second, "go-lumber keepalive (ACK 0) interval while a batch is unacknowledged")
	timeout := flag.Duration("timeout", 30*time.Second, "go-lumber network timeout")
	certFile := flag.String("cert", "", "server certificate (PEM); enables TLS with -key")
	keyFile := flag.String("key", "", "server private key (PEM)")
	caFile := flag.String("ca", "", "CA (PEM) for verifying client certificates")
	requireClientCert := flag.Bool("require-client-cert", false, "reject clients without a certificate signed by -ca")
	quiet := flag.Bool("quiet", false, "silence go-lumber's log (stderr)")
	flag.Parse()

	if *quiet {
		stdlog.SetOutput(io.Discard)
	}
	initial, err := parseMode(*modeFlag)
	if err != nil {
		stdlog.Fatal(err)
	}
	out := os.Stdout
	if *outPath != "" {
		if out, err = os.Create(*outPath); err != nil {
			stdlog.Fatal(err)
		}
	}

	var ln net.Listener
	if ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", *port)); err != nil {
		stdlog.Fatal(err)
	}
	if *certFile != "" {
		cfg, err := tlsConfig(*certFile, *keyFile, *caFile, *requireClientCert)
		if err != nil {
			stdlog.Fatal(err)
		}
		// server.TLS() is only honoured by ListenAndServe; with NewWithListener
		// the listener must do TLS itself.
		ln = tls.NewListener(ln, cfg)
	}
	reg := &conns{byAddr: map[string]*tracked{}}
	srv, err := server.NewWithListener(trackingListener{ln, reg},
		server.Keepalive(*keepalive), server.Timeout(*timeout), server.JSONDecoder(rawDecoder))
	if err != nil {
		stdlog.Fatal(err)
	}

	modes := make(chan mode)
	stop := make(chan struct{})
	go func() { // stdin: one mode per line; EOF means the harness is gone
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == "" {
				continue
			}
			m, err := parseMode(sc.Text())
			if err != nil {
				fmt.Printf("LUMBER_ERROR %v\n", err)
				continue
			}
			modes <- m
		}
		close(stop)
	}()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)

	a := &app{reg: reg, out: bufio.NewWriterSize(out, 1<<16)}
	a.setMode(initial)
	fmt.Printf("LUMBER_READY %d\n", ln.Addr().(*net.TCPAddr).Port)

	for {
		select {
		case b, ok := <-srv.ReceiveChan():
			if !ok {
				return
			}
			a.onBatch(b)
		case m := <-modes:
			a.setMode(m)
		case <-stop:
			_ = srv.Close()
			_ = a.out.Flush()
			return
		case <-sigs:
			_ = srv.Close()
			_ = a.out.Flush()
			return
		}
	}
}
