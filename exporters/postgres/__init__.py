"""The PostgreSQL exporter: schema, rows, COPY writer, embedded server."""
