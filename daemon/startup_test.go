package daemon

import (
	"errors"
	"fmt"
	"testing"

	"github.com/aws/smithy-go"

	"github.com/sinkd/sinkd/internal/cli"
)

// TestStartupS3Classes: which S3 answers end the start (exit 78: no retry
// can mend them) and which are waited out. The answers of a real server are
// tested in startup_integration_test.go; these are the codes MinIO cannot
// produce there (a bucket in another region, a denied permission).
func TestStartupS3Classes(t *testing.T) {
	for _, tt := range []struct {
		code  string
		fatal bool
	}{
		{"NoSuchBucket", true},
		{"InvalidAccessKeyId", true},
		{"SignatureDoesNotMatch", true},
		{"ExpiredToken", true},
		{"PermanentRedirect", true},
		{"AuthorizationHeaderMalformed", true},
		{"AccessDenied", false},
		{"SlowDown", false},
		{"InternalError", false},
	} {
		t.Run(tt.code, func(t *testing.T) {
			err := classifyS3("s3 bucket b", fmt.Errorf("store: list uploads: %w", &smithy.GenericAPIError{Code: tt.code}))
			var fatal *fatalStartError
			if got := errors.As(err, &fatal); got != tt.fatal {
				t.Errorf("fatal = %v, want %v (%v)", got, tt.fatal, err)
			}
			want := cli.ExitFailure
			if tt.fatal {
				want = cli.ExitConfig
			}
			if got := exitCode(fmt.Errorf("run: %w", err)); got != want {
				t.Errorf("exit code %d, want %d", got, want)
			}
		})
	}
	if err := classifyS3("s3 bucket b", errors.New("dial tcp: connection refused")); exitCode(err) != cli.ExitFailure {
		t.Errorf("a network error must be waited out, not fatal: %v", err)
	}
}
