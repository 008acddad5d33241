package taxi

// FieldsYAML is the taxi schema of DESIGN §10 as a sinkd `schema.fields`
// list (indented to sit under `fields:`), the one the example configurations
// use: trip_id, type, pickup_datetime and pickup_location_id required, money
// as exact decimal(9,2).
const FieldsYAML = `
    - {name: trip_id, type: int64, required: true}
    - {name: type, type: string, required: true}
    - {name: vendor_id, type: int32}
    - {name: pickup_datetime, type: timestamp, required: true}
    - {name: dropoff_datetime, type: timestamp}
    - {name: pickup_location_id, type: int32, required: true}
    - {name: dropoff_location_id, type: int32}
    - {name: pickup_latitude, type: double}
    - {name: pickup_longitude, type: double}
    - {name: dropoff_latitude, type: double}
    - {name: dropoff_longitude, type: double}
    - {name: passenger_count, type: int32}
    - {name: trip_distance, type: double}
    - {name: fare_amount, type: decimal, precision: 9, scale: 2}
    - {name: tip_amount, type: decimal, precision: 9, scale: 2}
    - {name: tolls_amount, type: decimal, precision: 9, scale: 2}
    - {name: total_amount, type: decimal, precision: 9, scale: 2}
    - {name: payment_type, type: string}
    - {name: store_and_fwd, type: bool}`
