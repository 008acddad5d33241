package kafkaclient

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"

	"github.com/sinkd/sinkd/config/conf"
)

// pki is a throw-away CA with a server certificate for 127.0.0.1 and a
// client certificate, written as PEM files.
type pki struct {
	dir                       string
	caFile, certFile, keyFile string // the client's
	serverCert                tls.Certificate
	pool                      *x509.CertPool
	notPEM                    string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	caKey := mustKey(t)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sinkd test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(name string, usage x509.ExtKeyUsage, ips ...net.IP) ([]byte, *ecdsa.PrivateKey) {
		k := mustKey(t)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips,
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der, k
	}
	p := &pki{dir: dir, pool: x509.NewCertPool()}
	p.pool.AddCert(ca)
	srvDER, srvKey := issue("broker", x509.ExtKeyUsageServerAuth, net.ParseIP("127.0.0.1"))
	p.serverCert = tls.Certificate{Certificate: [][]byte{srvDER}, PrivateKey: srvKey}
	cliDER, cliKey := issue("sinkd", x509.ExtKeyUsageClientAuth)
	keyDER, err := x509.MarshalECPrivateKey(cliKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	p.caFile = write("ca.pem", "CERTIFICATE", caDER)
	p.certFile = write("client.pem", "CERTIFICATE", cliDER)
	p.keyFile = write("client-key.pem", "EC PRIVATE KEY", keyDER)
	p.notPEM = filepath.Join(dir, "not.pem")
	if err := os.WriteFile(p.notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// client builds a client (which connects lazily) to read its options back.
func client(t *testing.T, o Options) (*kgo.Client, error) {
	t.Helper()
	opts, err := Opts(context.Background(), o)
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl, nil
}

func TestOptsMapping(t *testing.T) {
	p := newPKI(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDSINKDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(p.dir, "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(p.dir, "none"))
	brokers := []string{"127.0.0.1:1"}
	for _, c := range []struct {
		name string
		o    Options
		err  string // a substring of the error; "" for none
		// checks on the built client
		seeds               []string
		dial, request, retr time.Duration
		tls                 func(*tls.Config) bool // nil: TLS must be off
		mech                string                 // SASL mechanism name; "" for none
		logger              bool
	}{
		{name: "defaults", o: Options{Brokers: brokers}, seeds: brokers,
			dial: DefaultDialTimeout, request: DefaultRequestTimeout, retr: DefaultRetryTimeout},
		{name: "comma-separated seeds and timeouts", o: Options{Brokers: []string{" a:9092, b:9092", "", "c:9092"},
			DialTimeout: time.Second, RequestTimeout: 2 * time.Second, RetryTimeout: 3 * time.Second, Logger: slog.New(slog.DiscardHandler)},
			seeds: []string{"a:9092", "b:9092", "c:9092"}, dial: time.Second, request: 2 * time.Second, retr: 3 * time.Second, logger: true},
		{name: "no brokers", o: Options{Brokers: []string{" , "}}, err: "no brokers"},
		{name: "tls settings ignored while disabled", o: Options{Brokers: brokers, TLS: conf.TLS{CAFile: "/nonexistent"}}},
		{name: "tls system roots", o: Options{Brokers: brokers, TLS: conf.TLS{Enabled: true}},
			tls: func(c *tls.Config) bool {
				return c.RootCAs == nil && c.MinVersion == tls.VersionTLS12 && !c.InsecureSkipVerify && len(c.Certificates) == 0
			}},
		{name: "tls ca and client certificate", o: Options{Brokers: brokers, TLS: conf.TLS{Enabled: true, CAFile: p.caFile, CertFile: p.certFile, KeyFile: p.keyFile}},
			tls: func(c *tls.Config) bool { return c.RootCAs != nil && len(c.Certificates) == 1 }},
		{name: "tls insecure", o: Options{Brokers: brokers, TLS: conf.TLS{Enabled: true, InsecureSkipVerify: true}},
			tls: func(c *tls.Config) bool { return c.InsecureSkipVerify }},
		{name: "tls ca missing", o: Options{Brokers: brokers, TLS: conf.TLS{Enabled: true, CAFile: filepath.Join(p.dir, "absent.pem")}}, err: "ca_file"},
		{name: "tls ca not PEM", o: Options{Brokers: brokers, TLS: conf.TLS{Enabled: true, CAFile: p.notPEM}}, err: "holds no PEM certificate"},
		{name: "tls key without certificate", o: Options{Brokers: brokers, TLS: conf.TLS{Enabled: true, KeyFile: p.keyFile}}, err: "client certificate"},
		{name: "tls certificate without key", o: Options{Brokers: brokers, TLS: conf.TLS{Enabled: true, CertFile: p.certFile}}, err: "client certificate"},
		{name: "sasl plain", o: Options{Brokers: brokers, SASL: conf.SASL{Mechanism: "plain", Username: "u", Password: "p"}}, mech: "PLAIN"},
		{name: "sasl scram-sha-256", o: Options{Brokers: brokers, SASL: conf.SASL{Mechanism: "scram-sha-256", Username: "u", Password: "p"}}, mech: "SCRAM-SHA-256"},
		{name: "sasl scram-sha-512 in capitals", o: Options{Brokers: brokers, SASL: conf.SASL{Mechanism: "SCRAM-SHA-512", Username: "u", Password: "p"}}, mech: "SCRAM-SHA-512"},
		{name: "sasl msk iam over tls", o: Options{Brokers: brokers, TLS: conf.TLS{Enabled: true}, SASL: conf.SASL{Mechanism: "aws-msk-iam"}},
			tls: func(c *tls.Config) bool { return c != nil }, mech: "AWS_MSK_IAM"},
		{name: "sasl unknown", o: Options{Brokers: brokers, SASL: conf.SASL{Mechanism: "gssapi"}}, err: `"gssapi" is not supported`},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl, err := client(t, c.o)
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("err = %v, want one containing %q", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.seeds != nil {
				if got := cl.OptValue(kgo.SeedBrokers); !reflect.DeepEqual(got, c.seeds) {
					t.Errorf("seeds = %v, want %v", got, c.seeds)
				}
			}
			for _, d := range []struct {
				opt  any
				want time.Duration
			}{{kgo.DialTimeout, c.dial}, {kgo.RequestTimeoutOverhead, c.request}, {kgo.RetryTimeout, c.retr}} {
				if got := cl.OptValue(d.opt).(time.Duration); d.want != 0 && got != d.want {
					t.Errorf("%T timeout = %v, want %v", d.opt, got, d.want)
				}
			}
			tc, _ := cl.OptValue(kgo.DialTLSConfig).(*tls.Config)
			switch {
			case c.tls == nil && tc != nil:
				t.Errorf("TLS on, want off")
			case c.tls != nil && (tc == nil || !c.tls(tc)):
				t.Errorf("TLS config %+v does not match", tc)
			}
			ms, _ := cl.OptValue(kgo.SASL).([]sasl.Mechanism)
			var names []string
			for _, m := range ms {
				names = append(names, m.Name())
			}
			if want := []string{c.mech}; c.mech == "" && len(names) > 0 || c.mech != "" && !reflect.DeepEqual(names, want) {
				t.Errorf("SASL = %v, want %q", names, c.mech)
			}
			if got := cl.OptValue(kgo.WithLogger) != nil; got != c.logger {
				t.Errorf("logger set = %v, want %v", got, c.logger)
			}
		})
	}
}

// MSK IAM signs with the credentials of the AWS chain, for the region in the
// broker's host name.
func TestMSKIAMSignsWithChainCredentials(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDSINKDTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret")
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(t.TempDir(), "none"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(t.TempDir(), "none"))
	m, err := Mechanism(context.Background(), conf.SASL{Mechanism: "aws-msk-iam"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	_, first, err := m.Authenticate(context.Background(), "b-1.sinkd.abc123.c2.kafka.eu-west-1.amazonaws.com:9098")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"AKIDSINKDTEST", "eu-west-1", "kafka-cluster"} {
		if !strings.Contains(string(first), want) {
			t.Errorf("first message %s lacks %q", first, want)
		}
	}
}

// The builder against a real broker on loopback (kfake) that requires TLS
// with a client certificate and SASL: each mechanism connects with the right
// password and fails with a wrong one.
func TestBrokerTLSAndSASL(t *testing.T) {
	p := newPKI(t)
	const user, pass = "sinkd", "s3cret"
	cluster, err := kfake.NewCluster(
		kfake.NumBrokers(1),
		kfake.SeedTopics(1, "sinkd-kafkaclient-test"),
		kfake.TLS(&tls.Config{
			Certificates: []tls.Certificate{p.serverCert},
			ClientAuth:   tls.RequireAndVerifyClientCert,
			ClientCAs:    p.pool,
			MinVersion:   tls.VersionTLS12,
		}),
		kfake.EnableSASL(),
		kfake.Superuser("PLAIN", user, pass),
		kfake.Superuser("SCRAM-SHA-256", user, pass),
		kfake.Superuser("SCRAM-SHA-512", user, pass),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	secure := conf.TLS{Enabled: true, CAFile: p.caFile, CertFile: p.certFile, KeyFile: p.keyFile}
	for _, c := range []struct {
		name string
		tls  conf.TLS
		sasl conf.SASL
		ok   bool
	}{
		{"plain", secure, conf.SASL{Mechanism: "plain", Username: user, Password: pass}, true},
		{"scram-sha-256", secure, conf.SASL{Mechanism: "scram-sha-256", Username: user, Password: pass}, true},
		{"scram-sha-512", secure, conf.SASL{Mechanism: "scram-sha-512", Username: user, Password: pass}, true},
		{"scram-sha-512 wrong password", secure, conf.SASL{Mechanism: "scram-sha-512", Username: user, Password: "wrong"}, false},
		{"plain wrong password", secure, conf.SASL{Mechanism: "plain", Username: user, Password: "wrong"}, false},
		{"no sasl", secure, conf.SASL{}, false},
		{"no client certificate", conf.TLS{Enabled: true, CAFile: p.caFile}, conf.SASL{Mechanism: "plain", Username: user, Password: pass}, false},
		{"unknown ca", conf.TLS{Enabled: true, CertFile: p.certFile, KeyFile: p.keyFile}, conf.SASL{Mechanism: "plain", Username: user, Password: pass}, false},
		{"no tls", conf.TLS{}, conf.SASL{Mechanism: "plain", Username: user, Password: pass}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			opts, err := Opts(context.Background(), Options{
				Brokers: cluster.ListenAddrs(), TLS: c.tls, SASL: c.sasl,
				DialTimeout: 2 * time.Second, RequestTimeout: 2 * time.Second, RetryTimeout: 2 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			cl, err := kgo.NewClient(append(opts, kgo.DefaultProduceTopic("sinkd-kafkaclient-test"), kgo.RecordRetries(1))...)
			if err != nil {
				t.Fatal(err)
			}
			defer cl.Close()
			// A refused connection is retried until the deadline: keep the
			// failing cases short.
			wait := time.Second
			if c.ok {
				wait = 10 * time.Second
			}
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			// A produce needs authentication to succeed (a metadata-only
			// ping may be answered before SASL on some brokers).
			err = cl.ProduceSync(ctx, &kgo.Record{Value: []byte(c.name)}).FirstErr()
			if c.ok && err != nil {
				t.Fatalf("produce failed: %v", err)
			}
			if !c.ok && err == nil {
				t.Fatal("produce succeeded, want a refused connection")
			}
		})
	}
}
