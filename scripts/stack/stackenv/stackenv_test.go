package stackenv

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestRead(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    Env
	}{
		{
			name: "stack.sh output",
			content: "export SINKD_KAFKA_BROKERS=127.0.0.1:19092\n" +
				"export SINKD_S3_ENDPOINT=http://127.0.0.1:19000\n" +
				"export SINKD_S3_BUCKET=sinkd-test\n" +
				"export AWS_REGION=us-east-1\n" +
				"export SINKD_STACK_DIR=/tmp/stack\n",
			want: Env{
				KafkaBrokers: "127.0.0.1:19092", S3Endpoint: "http://127.0.0.1:19000",
				S3Bucket: "sinkd-test", Region: "us-east-1", Dir: "/tmp/stack",
			},
		},
		{
			name:    "quotes, comments, blank lines and lines without export",
			content: "# written by hand\n\nAWS_ACCESS_KEY_ID='minio'\nexport AWS_SECRET_ACCESS_KEY=\"secret\"\nnot a variable\n",
			want:    Env{AccessKey: "minio", SecretKey: "secret"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "env")
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Setenv("SINKD_STACK_ENV", path)
			got, err := Read()
			if err != nil {
				t.Fatal(err)
			}
			got.Vars = nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Read() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestReadMissingFile(t *testing.T) {
	t.Setenv("SINKD_STACK_ENV", filepath.Join(t.TempDir(), "absent"))
	if _, err := Read(); err == nil {
		t.Fatal("Read() of a missing env file succeeded, want an error")
	}
}
