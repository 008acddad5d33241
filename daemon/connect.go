package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/sinkd/sinkd/config"
	"github.com/sinkd/sinkd/internal/kafkaclient"
	"github.com/sinkd/sinkd/store"
)

// connectTimeout bounds each check of `validate --connect`.
const connectTimeout = 20 * time.Second

// toolDialTimeout bounds opening a connection for `validate --connect` and
// `sinkd tap`: shorter than the source's, so that an unreachable broker is
// reported quickly (the dead-letter tools use the same).
const toolDialTimeout = 5 * time.Second

// checkConnect checks that every endpoint of cfg answers and that the
// credentials can do what the pipeline needs. It prints one line per check
// and reports whether all passed.
func checkConnect(ctx context.Context, cfg *config.Config, w io.Writer) bool {
	ok := true
	report := func(what string, err error, detail string) {
		if err != nil {
			ok = false
			fmt.Fprintf(w, "FAIL  %s: %v\n", what, err)
			return
		}
		fmt.Fprintf(w, "ok    %s%s\n", what, detail)
	}
	if k := cfg.Source.Kafka; k != nil {
		what := "kafka source " + strings.Join(k.Brokers, ",")
		report(what, kafkaTopicsExist(ctx, k.Brokers, k.TLS, k.SASL, k.Topics), ": topics "+strings.Join(k.Topics, ",")+" exist")
	}
	if k := cfg.Source.Kinesis; k != nil {
		fmt.Fprintf(w, "skip  kinesis source %s: not checked by --connect yet\n", k.Stream)
	}
	if d := cfg.DLQ.Kafka; d != nil {
		what := "dead-letter topic " + d.Topic
		detail, err := checkDLQTopic(ctx, *d)
		report(what, err, detail)
	}
	seen := map[string]bool{}
	urls := []string{}
	for _, r := range cfg.Routes {
		if r.Parquet != nil {
			urls = append(urls, r.Parquet.Destination)
		}
	}
	urls = append(urls, cfg.Checkpoint.Store)
	for _, u := range urls {
		if u == "" || seen[u] {
			continue
		}
		seen[u] = true
		report("object store "+u, checkStore(ctx, u, cfg.S3), ": writable, multipart uploads and conditional writes (If-None-Match) work")
	}
	for _, r := range cfg.Routes {
		if o := r.OpenSearch; o != nil && o.URL != "" {
			report("opensearch "+redact(o.URL), checkHTTP(ctx, o.URL), ": answers")
		}
	}
	return ok
}

func kafkaTopicsExist(ctx context.Context, brokers []string, t config.TLS, s config.SASL, topics []string) error {
	opts, err := kafkaclient.Opts(ctx, kafkaclient.Options{Brokers: brokers, TLS: t, SASL: s, DialTimeout: toolDialTimeout})
	if err != nil {
		return err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	listed, err := kadm.NewClient(cl).ListTopics(cctx, topics...)
	if err != nil {
		return fmt.Errorf("the brokers do not answer: %w", err)
	}
	for _, tp := range topics {
		if d, ok := listed[tp]; !ok || d.Err != nil {
			return fmt.Errorf("topic %s does not exist or may not be described (%v)", tp, d.Err)
		}
	}
	return nil
}

func checkDLQTopic(ctx context.Context, d config.DLQKafka) (string, error) {
	opts, err := kafkaclient.Opts(ctx, kafkaclient.Options{Brokers: d.Brokers, TLS: d.TLS, SASL: d.SASL, DialTimeout: toolDialTimeout})
	if err != nil {
		return "", err
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return "", err
	}
	defer cl.Close()
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	adm := kadm.NewClient(cl)
	listed, err := adm.ListTopics(cctx, d.Topic)
	if err != nil {
		return "", fmt.Errorf("the brokers do not answer: %w", err)
	}
	if t, ok := listed[d.Topic]; ok && !errors.Is(t.Err, kerr.UnknownTopicOrPartition) {
		return ": exists", t.Err
	}
	if !d.Creates() {
		return "", errors.New("does not exist and dlq.kafka.create is false")
	}
	resp, err := adm.ValidateCreateTopics(cctx, d.Partitions, d.ReplicationFactor, nil, d.Topic)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		return "", fmt.Errorf("does not exist, and creating it would fail: %w", err)
	}
	return ": does not exist yet; sinkd may create it (validated with the broker)", nil
}

// checkStore writes a probe object twice with If-None-Match (the second must
// be refused: manifests depend on it), starts and aborts a multipart upload,
// and deletes the probe.
func checkStore(ctx context.Context, url string, s3 config.S3) error {
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	st, prefix, err := store.Open(cctx, url, s3)
	if err != nil {
		return err
	}
	key := prefix + "_sinkd-connect-probe-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	if err := st.PutIfAbsent(cctx, key, []byte("probe")); err != nil {
		return fmt.Errorf("cannot write: %w", err)
	}
	defer st.Delete(context.WithoutCancel(cctx), key)
	if err := st.PutIfAbsent(cctx, key, []byte("probe")); !errors.Is(err, store.ErrExists) {
		return fmt.Errorf("conditional writes (If-None-Match) are not enforced: a second write of the same key got %v", err)
	}
	id, err := st.CreateUpload(cctx, key+".multipart", nil)
	if err != nil {
		return fmt.Errorf("cannot start a multipart upload: %w", err)
	}
	if err := st.AbortUpload(cctx, key+".multipart", id); err != nil {
		return fmt.Errorf("cannot abort a multipart upload: %w", err)
	}
	return nil
}

func checkHTTP(ctx context.Context, url string) error {
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(cctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 500 {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

func redact(u string) string {
	if i := strings.Index(u, "@"); i >= 0 {
		if j := strings.Index(u, "://"); j >= 0 && j < i {
			return u[:j+3] + "…@" + u[i+1:]
		}
	}
	return u
}
