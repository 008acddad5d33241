package taxi

import (
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/kinesis/types"
)

func TestKeepFailed(t *testing.T) {
	entry := func(key string) types.PutRecordsRequestEntry {
		return types.PutRecordsRequestEntry{PartitionKey: aws.String(key), Data: []byte("data-" + key)}
	}
	ok := types.PutRecordsResultEntry{SequenceNumber: aws.String("1")}
	throttled := types.PutRecordsResultEntry{ErrorCode: aws.String("ProvisionedThroughputExceededException"), ErrorMessage: aws.String("slow down")}

	tests := []struct {
		name    string
		results []types.PutRecordsResultEntry
		want    []string
	}{
		{"all accepted", []types.PutRecordsResultEntry{ok, ok, ok, ok}, nil},
		{"all rejected", []types.PutRecordsResultEntry{throttled, throttled, throttled, throttled}, []string{"1", "2", "3", "4"}},
		{"some rejected keep their order", []types.PutRecordsResultEntry{ok, throttled, ok, throttled}, []string{"2", "4"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &KinesisSink{pending: []types.PutRecordsRequestEntry{entry("1"), entry("2"), entry("3"), entry("4")}, pendingBytes: 28}
			err := s.keepFailed(tt.results)
			if (err != nil) != (len(tt.want) > 0) {
				t.Errorf("error %v with %d rejected", err, len(tt.want))
			}
			if len(s.pending) != len(tt.want) || s.pendingBytes != 7*len(tt.want) {
				t.Fatalf("pending %d entries of %d bytes, want %v", len(s.pending), s.pendingBytes, tt.want)
			}
			for i, key := range tt.want {
				if aws.ToString(s.pending[i].PartitionKey) != key || string(s.pending[i].Data) != "data-"+key {
					t.Errorf("pending[%d] = %s", i, aws.ToString(s.pending[i].PartitionKey))
				}
			}
		})
	}
}
