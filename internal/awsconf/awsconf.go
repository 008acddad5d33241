// Package awsconf loads the AWS configuration sinkd's Kinesis clients start
// from: the SDK's default chain (environment, profile, instance role), every
// HTTP call bounded by a timeout, and a region.
package awsconf

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
)

// ErrNoRegion means neither the configuration nor the SDK's chain named a
// region, and the endpoint is AWS itself.
var ErrNoRegion = errors.New("no AWS region")

// emulatorRegion is given to local emulators, which accept any region.
const emulatorRegion = "us-east-1"

// Load returns the default AWS configuration with region (if not "") and
// every HTTP call bounded by timeout; loading itself is bounded by timeout
// too. local means the endpoint is an emulator: a missing region is then
// not an error.
func Load(ctx context.Context, region string, local bool, timeout time.Duration) (aws.Config, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	opts := []func(*awsconfig.LoadOptions) error{
		awsconfig.WithHTTPClient(awshttp.NewBuildableClient().WithTimeout(timeout)),
	}
	if region != "" {
		opts = append(opts, awsconfig.WithRegion(region))
	}
	c, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return aws.Config{}, fmt.Errorf("aws config: %w", err)
	}
	if c.Region == "" {
		if !local {
			return aws.Config{}, ErrNoRegion
		}
		c.Region = emulatorRegion
	}
	return c, nil
}
