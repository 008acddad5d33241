package dlq

// For the tests in package dlq_test.
var (
	KafkaLetterForTest = kafkaLetter
	KafkaRecordForTest = kafkaRecord
)
