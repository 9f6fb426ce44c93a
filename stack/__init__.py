"""The embedded default stack: real services (Kafka, LocalStack, Spark, the collector) as local processes."""
