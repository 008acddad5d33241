package awsconf

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestLoadRegion(t *testing.T) {
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	t.Setenv("AWS_CONFIG_FILE", t.TempDir()+"/none")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", t.TempDir()+"/none")
	for _, c := range []struct {
		name, region string
		local        bool
		want         string
		err          error
	}{
		{"configured", "eu-west-1", false, "eu-west-1", nil},
		{"emulator without one", "", true, emulatorRegion, nil},
		{"AWS without one", "", false, "", ErrNoRegion},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := Load(context.Background(), c.region, c.local, 5*time.Second)
			if !errors.Is(err, c.err) {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
			if cfg.Region != c.want {
				t.Fatalf("region = %q, want %q", cfg.Region, c.want)
			}
		})
	}
}
