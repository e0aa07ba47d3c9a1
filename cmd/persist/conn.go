package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/nats-io/nats.go"

	"github.com/nats-persist/persist/client"
	"github.com/nats-persist/persist/cmd/internal/command"
	"github.com/nats-persist/persist/subjects"
)

// connFlags are the connection flags, named, with the environment
// variables, as the nats command names them.
type connFlags struct {
	server, user, password, token string
	creds, nkey                   string
	tlsCert, tlsKey, tlsCA        string
	context                       string
	prefix                        string
	timeout                       time.Duration
	retries                       int
}

// declare adds the connection flags to app.
func (f *connFlags) declare(app *kingpin.Application) {
	app.Flag("server", "NATS server URLs, comma separated (default: the context's, else nats://127.0.0.1:4222).").Short('s').Envar("NATS_URL").PlaceHolder("URL").StringVar(&f.server)
	app.Flag("user", "User name; without --password, a token.").Envar("NATS_USER").PlaceHolder("USER").StringVar(&f.user)
	app.Flag("password", "Password.").Envar("NATS_PASSWORD").PlaceHolder("PASSWORD").StringVar(&f.password)
	app.Flag("token", "Token.").Envar("NATS_TOKEN").PlaceHolder("TOKEN").StringVar(&f.token)
	app.Flag("creds", "User credentials file.").Envar("NATS_CREDS").PlaceHolder("FILE").StringVar(&f.creds)
	app.Flag("nkey", "File holding a user NKey seed.").Envar("NATS_NKEY").PlaceHolder("FILE").StringVar(&f.nkey)
	app.Flag("tlscert", "TLS client certificate.").Envar("NATS_CERT").PlaceHolder("FILE").StringVar(&f.tlsCert)
	app.Flag("tlskey", "TLS client private key.").Envar("NATS_KEY").PlaceHolder("FILE").StringVar(&f.tlsKey)
	app.Flag("tlsca", "TLS certificate authority chain.").Envar("NATS_CA").PlaceHolder("FILE").StringVar(&f.tlsCA)
	app.Flag("context", "nats CLI context: a name under ~/.config/nats/context, or a .json file.").Envar("NATS_CONTEXT").PlaceHolder("NAME").StringVar(&f.context)
	app.Flag("prefix", "Subject prefix the persist workers serve.").Envar("PERSIST_PREFIX").Default(subjects.DefaultPrefix).StringVar(&f.prefix)
	app.Flag("timeout", "How long one attempt of a request may take.").Envar("NATS_TIMEOUT").Default("5s").DurationVar(&f.timeout)
	app.Flag("retries", "How often a request that timed out or met a busy or missing worker is tried again (writes keep their msg id, so none is stored twice).").Envar("PERSIST_RETRIES").Default(strconv.Itoa(client.DefaultRetry.Attempts - 1)).IntVar(&f.retries)
}

// natsContext is the part of a nats CLI context file that a connection
// uses (the file holds more, which is ignored).
type natsContext struct {
	URL         string `json:"url"`
	User        string `json:"user"`
	Password    string `json:"password"`
	Token       string `json:"token"`
	Creds       string `json:"creds"`
	NKey        string `json:"nkey"`
	Cert        string `json:"cert"`
	Key         string `json:"key"`
	CA          string `json:"ca"`
	InboxPrefix string `json:"inbox_prefix"`
}

// configDir is where the nats CLI keeps its files: $XDG_CONFIG_HOME/nats,
// else ~/.config/nats.
func configDir() (string, error) {
	if d := os.Getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "nats"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(home, ".config", "nats"), nil
}

// loadContext reads the context named by --context (or NATS_CONTEXT),
// else the one selected in context.txt; none selected is an empty
// context. A name ending in .json that names a file is read as it is.
func (f *connFlags) loadContext() (natsContext, string, error) {
	var nctx natsContext
	dir, err := configDir()
	name := f.context
	if name == "" {
		if err != nil {
			return nctx, "", nil // no home: no selected context either
		}
		b, rerr := os.ReadFile(filepath.Join(dir, "context.txt"))
		if rerr != nil {
			return nctx, "", nil
		}
		if name = strings.TrimSpace(string(b)); name == "" {
			return nctx, "", nil
		}
	}
	var path string
	switch {
	case strings.HasSuffix(name, ".json") && fileExists(name):
		path = name
	case err != nil:
		return nctx, name, fmt.Errorf("context %q: %w", name, err)
	case name == "." || name == ".." || strings.ContainsAny(name, `/\`):
		return nctx, name, command.Usagef("context %q: not a context name", name)
	default:
		path = filepath.Join(dir, "context", name+".json")
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nctx, name, command.Usagef("unknown context %q (no file %s)", name, path)
	}
	if err != nil {
		return nctx, name, fmt.Errorf("context %q: %w", name, err)
	}
	if err := json.Unmarshal(b, &nctx); err != nil {
		return nctx, name, fmt.Errorf("context %q: %s: %w", name, path, err)
	}
	return nctx, name, nil
}

func fileExists(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode().IsRegular()
}

// expandHome replaces a leading ~ with the home directory, as context
// files written by hand use it.
func expandHome(path string) string {
	if path == "~" || strings.HasPrefix(path, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, path[1:])
		}
	}
	return path
}

// settings merges the context and the flags: a flag (or its variable)
// that is set wins over the context's field.
func (f *connFlags) settings() (natsContext, string, error) {
	s, name, err := f.loadContext()
	if err != nil {
		return s, name, err
	}
	over := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	over(&s.URL, f.server)
	if f.user != "" && f.password == "" {
		// As the nats command does: a user without a password is a token.
		s.Token, s.User, s.Password = f.user, "", ""
	} else {
		over(&s.User, f.user)
		over(&s.Password, f.password)
	}
	over(&s.Token, f.token)
	over(&s.Creds, f.creds)
	over(&s.NKey, f.nkey)
	over(&s.Cert, f.tlsCert)
	over(&s.Key, f.tlsKey)
	over(&s.CA, f.tlsCA)
	if s.URL == "" {
		s.URL = nats.DefaultURL
	}
	return s, name, nil
}

// options turns the merged settings into nats options.
func (s natsContext) options() ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case s.User != "":
		opts = append(opts, nats.UserInfo(s.User, s.Password))
	case s.Creds != "":
		opts = append(opts, nats.UserCredentials(expandHome(s.Creds)))
	case s.NKey != "":
		opt, err := nats.NkeyOptionFromSeed(expandHome(s.NKey))
		if err != nil {
			return nil, fmt.Errorf("nkey %s: %w", s.NKey, err)
		}
		opts = append(opts, opt)
	}
	if s.Token != "" {
		opts = append(opts, nats.Token(s.Token))
	}
	if s.Cert != "" || s.Key != "" {
		if s.Cert == "" || s.Key == "" {
			return nil, command.Usagef("--tlscert and --tlskey go together")
		}
		opts = append(opts, nats.ClientCert(expandHome(s.Cert), expandHome(s.Key)))
	}
	if s.CA != "" {
		opts = append(opts, nats.RootCAs(expandHome(s.CA)))
	}
	if s.InboxPrefix != "" {
		opts = append(opts, nats.CustomInboxPrefix(s.InboxPrefix))
	}
	return opts, nil
}

// connectFor is connect for a verb on stream, whose name is checked
// first (a bad name is a usage error, before any connection).
func (c *cli) connectFor(stream string) (*client.Client, *nats.Conn, error) {
	if err := checkStream(stream); err != nil {
		return nil, nil, err
	}
	return c.connect()
}

// connect opens the NATS connection and returns a client on it, with
// opts after the global flags'; close ends the connection.
func (c *cli) connect(opts ...client.Option) (cl *client.Client, nc *nats.Conn, err error) {
	if err := subjects.ValidatePrefix(c.conn.prefix); err != nil {
		return nil, nil, command.Usagef("--prefix %q: %v", c.conn.prefix, err)
	}
	if c.conn.timeout <= 0 {
		return nil, nil, command.Usagef("--timeout %v: must be positive", c.conn.timeout)
	}
	if c.conn.retries < 0 {
		return nil, nil, command.Usagef("--retries %d: must be 0 or more", c.conn.retries)
	}
	s, name, err := c.conn.settings()
	if err != nil {
		return nil, nil, err
	}
	nopts, err := s.options()
	if err != nil {
		return nil, nil, err
	}
	nopts = append(nopts, nats.Name("persist"), nats.Timeout(c.conn.timeout))
	nc, err = nats.Connect(s.URL, nopts...)
	if err != nil {
		where := redactURL(s.URL)
		if name != "" {
			where += " (context " + name + ")"
		}
		return nil, nil, fmt.Errorf("connect to %s: %w", where, err)
	}
	retry := client.DefaultRetry
	retry.Attempts = c.conn.retries + 1
	opts = append([]client.Option{client.WithPrefix(c.conn.prefix), client.WithTimeout(c.conn.timeout), client.WithRetry(retry)}, opts...)
	return client.New(nc, opts...), nc, nil
}

// redactURL hides the user information of server URLs (user:password@
// or token@), which an error message must not print.
func redactURL(urls string) string {
	parts := strings.Split(urls, ",")
	for i, p := range parts {
		u, err := url.Parse(strings.TrimSpace(p))
		if err == nil && u.User != nil {
			u.User = url.User("xxxxx")
			parts[i] = u.String()
		}
	}
	return strings.Join(parts, ",")
}
