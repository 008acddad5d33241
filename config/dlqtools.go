package config

import "github.com/sinkd/sinkd/dlq"

// The dead-letter tools (sinkd dlq inspect|redrive --config) load a
// pipeline's file through this package; dlq cannot import config, which
// imports dlq for its block, so config hands it the loader.
func init() { dlq.LoadConfig = loadForDLQ }

func loadForDLQ(path string) (*dlq.Pipeline, error) {
	c, err := Load(path)
	if err != nil {
		return nil, err
	}
	p := &dlq.Pipeline{DLQ: c.DLQ}
	if k := c.Source.Kafka; k != nil {
		p.Kafka = &dlq.SourceKafka{Brokers: k.Brokers, Topics: k.Topics, TLS: k.TLS, SASL: k.SASL}
	}
	if k := c.Source.Kinesis; k != nil {
		p.Kinesis = &dlq.SourceKinesis{Stream: k.Stream, Endpoint: k.Endpoint, Region: k.Region}
	}
	return p, nil
}
