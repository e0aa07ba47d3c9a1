package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/nats-persist/persist/cmd/internal/command"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/broker"
)

// Timeouts of the parts the worker waits on.
const (
	serverReadyTimeout = 10 * time.Second // embedded server accepting clients
	reconnectWait      = 2 * time.Second  // between attempts to reach NATS
	flushTimeout       = 5 * time.Second  // server confirming what was sent
)

// serve runs the worker with a valid cfg until ctx is cancelled or the NATS
// connection is closed for good, then shuts down: broker first (answers
// what is in flight, closes every stream), then the connection, then the
// embedded server, so that no reply or event is cut off.
func serve(ctx context.Context, cfg config, stderr io.Writer) error {
	logger := newLogger(cfg, stderr)

	// Only the data directory itself is created; nothing under it is read
	// at start, so start-up time does not grow with the number of streams.
	for _, dir := range []string{cfg.Data, cfg.Archive, cfg.Backup} {
		if dir == "" {
			continue
		}
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return fmt.Errorf("create directory: %w", err)
		}
	}

	logNoFile(logger)

	var srv *server.Server
	natsURL := cfg.NATSURL
	if natsURL == "" {
		var err error
		srv, err = startServer(cfg, logger)
		if err != nil {
			return err
		}
		defer func() {
			srv.Shutdown()
			srv.WaitForShutdown()
			logger.Debug("embedded NATS server stopped")
		}()
		natsURL = srv.ClientURL()
	}

	closed := make(chan struct{})
	nc, err := connect(cfg, natsURL, srv, logger, closed)
	if err != nil {
		return err
	}
	defer func() {
		// Flush what the broker published last (final events, replies)
		// before closing; nothing is left to drain once the broker is down.
		if nc.IsConnected() {
			flushLogged(nc, logger)
		}
		nc.Close()
	}()

	b, err := broker.New(nc, broker.Options{
		DataDir:                cfg.Data,
		Prefix:                 cfg.Prefix,
		Name:                   cfg.Name,
		QueueGroup:             cfg.QueueGroup,
		ArchiveDir:             cfg.Archive,
		BackupDir:              cfg.Backup,
		ArchiveInterval:        cfg.ArchiveInterval,
		IdleTimeout:            cfg.IdleTimeout,
		MemoryIdleTimeout:      cfg.MemoryIdleTimeout,
		MaxOpen:                cfg.MaxOpen,
		MemoryBudget:           int64(cfg.MemoryBudget),
		TrimDelay:              cfg.TrimDelay,
		MaxStreamsPerNamespace: cfg.MaxStreamsPerNamespace,
		MaxStreams:             cfg.MaxStreams,
		MemoryQuota:            int64(cfg.MemoryQuota),
		MaxWait:                cfg.maxWait(),
		SummaryInterval:        cfg.summaryInterval(),
		Metadata:               map[string]string{"build": version()},
		ChangesWindow:          cfg.ChangesWindow,
		Logger:                 logger,
		InstanceCheckInterval:  cfg.InstanceCheckInterval,
		Partitioning:           cfg.Partitions.options,
		SharedDataDir:          cfg.Partitions.SharedDataDir,
	})
	if err != nil {
		return fmt.Errorf("start broker: %w", err)
	}
	// New returns once the server has the subscriptions, so a client that
	// reads the start line can send requests at once.
	logger.Info("persist worker started",
		"version", version(),
		"data", cfg.Data,
		"prefix", cfg.Prefix,
		"service", cfg.Name,
		"instance", b.Service().Info().ID,
		"nats_url", redactURL(natsURL),
		"embedded_server", srv != nil,
		"max_open", b.Budget().MaxOpen,
		"max_open_bound_by", b.Budget().BoundBy,
	)

	var runErr error
	select {
	case <-ctx.Done():
		logger.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	case <-closed:
		runErr = fmt.Errorf("NATS connection closed for good: %v", nc.LastError())
		logger.Error("NATS connection closed for good; shutting down", "err", nc.LastError())
	case runErr = <-b.Conflict():
		// The broker logged the other worker and stopped taking requests.
		logger.Error("shutting down: another worker serves the prefix", "err", runErr)
	}

	shCtx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	if err := b.Shutdown(shCtx); err != nil {
		return errors.Join(runErr, fmt.Errorf("shut down broker: %w", err))
	}
	if runErr == nil {
		logger.Info("persist worker stopped")
	}
	return runErr
}

// newLogger builds the slog logger the whole worker logs to. JSON lines
// show durations as the text lines and the flags do ("30s"), not as
// nanoseconds.
func newLogger(cfg config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.logLevel}
	if cfg.LogFormat == "json" {
		opts.ReplaceAttr = durationString
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// durationString is a ReplaceAttr that writes a duration as its String.
func durationString(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// startServer starts the embedded NATS server and waits until it accepts
// clients. Start returns once its client listener is open or has failed,
// so a taken port is reported at once with the server's own message.
func startServer(cfg config, logger *slog.Logger) (*server.Server, error) {
	port := cfg.listenPort
	if port == 0 {
		port = server.RANDOM_PORT
	}
	srv, err := server.NewServer(&server.Options{
		ServerName: "persist-worker",
		Host:       cfg.listenHost,
		Port:       port,
		NoSigs:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("embedded NATS server: %w", err)
	}
	sl := &serverLogger{log: logger.With("component", "nats-server")}
	srv.SetLoggerV2(sl, false, false, false)
	srv.Start()
	if srv.Addr() == nil || !srv.ReadyForConnections(serverReadyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		if msg := sl.fatalMessage(); msg != "" {
			return nil, fmt.Errorf("embedded NATS server on %s: %s", cfg.Listen, msg)
		}
		return nil, fmt.Errorf("embedded NATS server on %s: not ready after %v", cfg.Listen, serverReadyTimeout)
	}
	logger.Info("embedded NATS server listening", "url", srv.ClientURL())
	return srv, nil
}

// connect opens the worker's NATS connection. It never gives up
// reconnecting, and with an external server it also starts before that
// server is up. closed is closed when the connection ends for good, which
// only happens on Close or when the server keeps refusing the credentials.
func connect(cfg config, natsURL string, srv *server.Server, logger *slog.Logger, closed chan struct{}) (*nats.Conn, error) {
	var once sync.Once
	opts := []nats.Option{
		nats.Name("persist-worker " + cfg.Name),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(reconnectWait),
		// Logged once the server has confirmed the subscriptions, so the
		// line means the worker is serving.
		nats.ConnectHandler(func(nc *nats.Conn) {
			flushLogged(nc, logger)
			logger.Info("NATS connected", "url", redactURL(nc.ConnectedUrl()))
		}),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			if nc.IsClosed() {
				return // our own Close at shutdown
			}
			logger.Warn("NATS disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			flushLogged(nc, logger)
			logger.Info("NATS reconnected", "url", redactURL(nc.ConnectedUrl()))
		}),
		nats.ClosedHandler(func(*nats.Conn) {
			once.Do(func() { close(closed) })
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			if sub != nil {
				logger.Error("NATS error", "subject", sub.Subject, "err", err)
				return
			}
			logger.Error("NATS error", "err", err)
		}),
	}
	if srv != nil {
		opts = append(opts, nats.InProcessServer(srv))
	} else {
		opts = append(opts, nats.RetryOnFailedConnect(true))
	}
	if cfg.Creds != "" {
		opts = append(opts, nats.UserCredentials(cfg.Creds))
	}
	if cfg.NKey != "" {
		opt, err := nats.NkeyOptionFromSeed(cfg.NKey)
		if err != nil {
			return nil, fmt.Errorf("--nats-nkey: %w", err)
		}
		opts = append(opts, opt)
	}
	if cfg.TLSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCA))
	}
	if cfg.TLSCert != "" {
		opts = append(opts, nats.ClientCert(cfg.TLSCert, cfg.TLSKey))
	}
	nc, err := nats.Connect(natsURL, opts...)
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", redactURL(natsURL), err)
	}
	if !nc.IsConnected() {
		logger.Warn("NATS not reachable yet; retrying in the background", "url", redactURL(natsURL))
	}
	return nc, nil
}

// flushLogged waits until the server has processed everything sent so far;
// a failure is only logged, as the connection retries on its own.
func flushLogged(nc *nats.Conn, logger *slog.Logger) {
	if err := nc.FlushTimeout(flushTimeout); err != nil {
		logger.Warn("flush NATS connection", "err", err)
	}
}

// redactURL hides the credentials of a comma-separated list of NATS URLs
// so that they can be logged.
func redactURL(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err != nil || u.User == nil {
			continue
		}
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxxxx")
		} else {
			u.User = url.User("xxxxx") // a token
		}
		parts[i] = u.String()
	}
	return strings.Join(parts, ",")
}

// serverLogger sends the embedded server's log to slog. Its notices (a
// banner of a dozen lines at start) go to debug; warnings and errors stay
// visible. The first fatal message is kept to explain a failed start.
type serverLogger struct {
	log   *slog.Logger
	mu    sync.Mutex
	fatal string
}

func (l *serverLogger) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Debugf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l *serverLogger) Tracef(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }

// Fatalf logs an error; unlike the server's own logger it does not exit,
// the worker decides what a failed server means.
func (l *serverLogger) Fatalf(format string, v ...any) {
	msg := fmt.Sprintf(format, v...)
	l.mu.Lock()
	if l.fatal == "" {
		l.fatal = msg
	}
	l.mu.Unlock()
	l.log.Error(msg)
}

func (l *serverLogger) fatalMessage() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.fatal
}

// version describes the worker's own build (see command.Version).
func version() string {
	bi, _ := debug.ReadBuildInfo()
	return command.Version(bi)
}
