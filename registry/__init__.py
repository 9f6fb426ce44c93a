"""The schema registry: Confluent Schema Registry's REST API, its state kept in a compacted Kafka topic."""
